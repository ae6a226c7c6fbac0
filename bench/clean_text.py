"""False rejects on clean text, beside the boilerplate that must go.

    .venv/bin/python bench/clean_text.py [--half eval|tune|all] [--per-kind 300] [--json] [--details]

Builds, from the shared corpora only, documents that no curation operator should
reject, by kind:

=================  ===========================================================  ===========
kind               what (source)                                                group
=================  ===========================================================  ===========
doc_tldr           tldr command pages, Chinese with English command lines       docs
                   (zh_en_codeswitch ``tldr``)
lit_fiction_en     passages of 1-4 consecutive paragraphs of web-serial         literary
                   fiction chapters (web_extracted_text, royalroad pages)
lit_dialogue_en    single fiction lines that hold quoted speech (same pages)    literary
lit_quote_en       quoted sentences from human-annotated news article bodies    literary
                   (web_extracted_text ``aeb``: "...," she said)
lit_lyrics         song-lyric stanzas, English and Chinese (lyrics pages of     literary
                   web_extracted_text)
lit_poetry_zh      verses quoted in Chinese Wikipedia paragraphs (regular       literary
                   4/5/7-character lines)
short_title_en     StackExchange question titles, English with Chinese words    short
zh_review          short Chinese user reviews (zh_reviews)                      short
zh_wiki            Chinese Wikipedia paragraphs (zh_wiki_paragraphs)            prose
=================  ===========================================================  ===========

and text that should go: ``boilerplate`` (non-main-text paragraphs of the html
pages of the density evaluation half, site split as in models/density/build.py)
and ``web_cc_raw`` (raw Common Crawl WET documents of web_cc_text; the share the
quality rules reject there must not fall). ``main_text`` is the same pages'
main-text paragraphs, for the boilerplate ROC-AUC of the density score.

Tuning and evaluation stay apart: every document goes to half ``tune`` or
``eval`` by a hash of its id (pages by their site), and thresholds may only be
read off the ``tune`` half; ``lit_lyrics`` and ``lit_poetry_zh`` are left out
of tuning altogether (``--half tune`` drops them), so they measure kinds the
operators were never adjusted on. The default report is the ``eval`` half.

Prints, per kind, the share each operator of the default recipe rejects on its
own and the share the whole recipe rejects (its operators in order, near-dedup
aside, and budget pruning: neither is a quality verdict), and the density ROC-AUC of main
text against boilerplate paragraphs.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import random
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas import CuratedDocument, Rejection  # noqa: E402
from streams.stages.registry import build_stage  # noqa: E402

DATA = Path(os.environ.get("FOUNDRY_SHARED_DATA", ROOT.parent / "shared" / "data"))
SEED = 15
KEEP_GROUPS = {
    "doc_tldr": "docs", "lit_fiction_en": "literary", "lit_dialogue_en": "literary", "lit_quote_en": "literary",
    "lit_lyrics": "literary", "lit_poetry_zh": "literary", "short_title_en": "short", "zh_review": "short",
    "zh_wiki": "prose",
}
GO_KINDS = ("boilerplate", "web_cc_raw")
UNTUNED = ("lit_lyrics", "lit_poetry_zh")  # never in the tune half
SKIP_OPS = ("near_dedup", "budget_prune")  # duplicates and token budgets are no quality verdict

FICTION_PAGES = ("readability:royal-road", "trafilatura-eval:royalroad.com.melas.html")
LYRICS_PAGES = ("postlight:fixtures/genius.com.html", "goose3:tests/data/content/test_allnewlyrics1.html",
                "trafilatura-cache:chineselyrics4u.com.zhineng.html")


def read_jsonl(name: str):
    with gzip.open(DATA / name, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def half_of(key: str) -> str:
    return "tune" if int(hashlib.sha1(key.encode()).hexdigest(), 16) % 2 == 0 else "eval"


# --------------------------------------------------------------------------- the kinds

def _fiction(pages: dict[str, dict]) -> tuple[list, list]:
    """Passages of 1-4 paragraphs (seeded lengths) and single lines of quoted speech."""
    rng = random.Random(SEED)
    passages, dialogue = [], []
    for pid in FICTION_PAGES:
        paras = [p.strip() for p in pages[pid]["text"].split("\n") if len(p.strip()) >= 2]
        i = 0
        while i < len(paras):
            k = rng.randint(1, 4)
            passages.append((f"{pid}#p{i}", "\n".join(paras[i : i + k])))
            i += k
        for j, p in enumerate(paras):
            if re.search(r"[“\"][^”\"]{3,}[”\"]", p) and len(p) <= 400:
                dialogue.append((f"{pid}#d{j}", p))
    return passages, dialogue


_QUOTE = re.compile(r"[“\"]([A-Z][^”\"]{30,300}?[.,!?])[”\"]")


def _quotes(max_n: int) -> list:
    out = []
    for r in read_jsonl("web_extracted_text.jsonl.gz"):
        if not r["id"].startswith("aeb:") or r.get("lang") != "en":
            continue
        for j, m in enumerate(_QUOTE.finditer(r["text"])):
            q = m.group(1).rstrip(",") + ("" if m.group(1)[-1] in ".!?" else ".")
            out.append((f"{r['id']}#q{j}", q))
    random.Random(SEED).shuffle(out)
    return out[:max_n]


def _lyrics(pages: dict[str, dict]) -> list:
    out = []
    for pid in LYRICS_PAGES:
        lines = [ln.strip() for ln in pages[pid]["text"].split("\n")]
        block: list[str] = []
        for j, ln in enumerate(lines + [""]):
            # stanzas: blocks between section marks ([Chorus]) or blank lines, 4 lines at most
            if not ln or ln.startswith("[") or ln == "*" or len(block) == 4:
                if len(block) >= 2:
                    out.append((f"{pid}#s{j}", "\n".join(block)))
                block = [] if (not ln or ln.startswith("[") or ln == "*") else [ln]
            else:
                block.append(ln)
    return out


_H = "\u4e00-\u9fff\u3400-\u4dbf"
_VERSE = re.compile(rf"[「“『]((?:[{_H}]{{4,7}}[，,、；;。！？]){{2,}})[」”』]")


def _poetry_zh() -> list:
    out = []
    for r in read_jsonl("zh_wiki_paragraphs.jsonl.gz"):
        for j, m in enumerate(_VERSE.finditer(r["text"])):
            parts = [x for x in re.split("[，,、；;。！？]", m.group(1)) if x]
            if len(set(map(len, parts))) == 1:  # regular verse: every line the same length
                out.append((f"{r['id']}#v{j}", m.group(1)))
    return out


def clean_kinds(per_kind: int) -> dict[str, list[tuple[str, str, str | None]]]:
    """kind -> [(id, text, lang)], at most ``per_kind`` each (seeded sample)."""
    pages = {r["id"]: r for r in read_jsonl("web_extracted_text.jsonl.gz")
             if r["id"] in FICTION_PAGES + LYRICS_PAGES}
    fiction, dialogue = _fiction(pages)
    cs = list(read_jsonl("zh_en_codeswitch.jsonl.gz"))
    kinds = {
        "doc_tldr": [(r["id"], r["text"], None) for r in cs if r["id"].startswith("tldr:")],
        "lit_fiction_en": [(i, t, None) for i, t in fiction],
        "lit_dialogue_en": [(i, t, None) for i, t in dialogue],
        "lit_quote_en": [(i, t, None) for i, t in _quotes(4 * per_kind)],
        "lit_lyrics": [(i, t, None) for i, t in _lyrics(pages)],
        "lit_poetry_zh": [(i, t, None) for i, t in _poetry_zh()],
        "short_title_en": [(r["id"], r["text"], None) for r in cs if r["id"].startswith("se-chinese-titles:")],
        "zh_review": [(r["id"], r["text"], None) for r in read_jsonl("zh_reviews.jsonl.gz")],
        "zh_wiki": [(r["id"], r["text"], None) for r in read_jsonl("zh_wiki_paragraphs.jsonl.gz")],
    }
    rng = random.Random(SEED)
    for k, rows in kinds.items():
        rows = [r for r in rows if r[1].strip()]
        kinds[k] = rng.sample(rows, per_kind) if len(rows) > per_kind else rows
    return kinds


def _density_build():
    """The density build module (its paragraph labelling and site split)."""
    spec = importlib.util.spec_from_file_location("foundry_density_build", ROOT / "models" / "density" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    mod.DATA = DATA
    return mod


def go_kinds(per_kind: int, half: str) -> dict[str, list[tuple[str, str, str | None]]]:
    """boilerplate / main_text paragraphs of one page half, and raw WET documents."""
    build = _density_build()
    site_half = None if half == "all" else (0 if half == "tune" else 1)  # the density build fits on half 0
    pars = build.eval_paragraphs(half=site_half)
    rng = random.Random(SEED)
    out: dict[str, list] = {}
    for label, kind in ((0, "boilerplate"), (1, "main_text")):
        rows = [(f"{p}#{i}", t, None) for i, (p, t, y, _) in enumerate(pars) if y == label]
        out[kind] = rng.sample(rows, per_kind) if len(rows) > per_kind else rows
    wet = [(r["id"], r["text"], None) for r in read_jsonl("web_cc_text.jsonl.gz")
           if r["id"].startswith("dolma-ccmain-2019-30") and half in ("all", half_of(r["id"]))]
    out["web_cc_raw"] = rng.sample(wet, per_kind) if len(wet) > per_kind else wet
    return out


def load(per_kind: int = 300, half: str = "eval") -> dict[str, list[CuratedDocument]]:
    """Every kind as fresh documents of one half (``tune``, ``eval`` or ``all``)."""
    kinds = clean_kinds(per_kind)
    out: dict[str, list[CuratedDocument]] = {}
    for k, rows in kinds.items():
        if half == "tune" and k in UNTUNED:
            continue
        out[k] = [_doc(i, t, k, lang) for i, t, lang in rows if half in ("all", half_of(i))]
    for k, rows in go_kinds(per_kind, half).items():
        out[k] = [_doc(i, t, k, lang) for i, t, lang in rows]
    return out


def _doc(i: str, t: str, kind: str, lang: str | None) -> CuratedDocument:
    return CuratedDocument(id=i, text=t, source=kind, lang=lang, recipe_version="clean-text",
                           content_hash=hashlib.sha256(t.encode("utf-8")).hexdigest())


def copies(docs):
    return [_doc(d.id, d.text, d.source, d.lang) for d in docs]


# --------------------------------------------------------------------------- measuring

def recipe_stages(recipe_path: str | None = None) -> list:
    try:
        from schemas.recipe import load_recipe
    except ImportError:  # the recipe contract before its move to schemas/
        from foundry.recipe import load_recipe
    recipe = load_recipe(recipe_path)
    return [build_stage(dict(s)) for s in recipe.curation if s["op"] not in SKIP_OPS]


def run_stage(stage, docs, batch: int = 64) -> list:
    out = []
    for i in range(0, len(docs), batch):
        out.extend(stage.process_batch(docs[i : i + batch]))
    return out


def chain(stages, docs) -> list:
    """Each document's outcome through the stages in order (the first rejection stands)."""
    final: dict[str, object] = {}
    alive = copies(docs)
    for st in stages:
        outs = run_stage(st, alive)
        alive = []
        for o in outs:
            if isinstance(o, Rejection):
                final[o.id] = o
            else:
                alive.append(o)
    for d in alive:
        final[d.id] = d
    return [final[d.id] for d in docs]


def roc_auc(y, s) -> float:
    import numpy as np
    from scipy.stats import rankdata

    y, s = np.asarray(y), np.asarray(s, dtype=float)
    n1, n0 = int(y.sum()), int(len(y) - y.sum())
    r = rankdata(s)
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def measure(docs: dict[str, list[CuratedDocument]], stages) -> dict:
    res: dict = {"operators": {}, "recipe": {}, "details": {}}
    for st in stages:
        res["operators"][st.name] = {}
        for k, ds in docs.items():
            outs = run_stage(st, copies(ds))
            res["operators"][st.name][k] = sum(isinstance(o, Rejection) for o in outs) / max(1, len(ds))
    for k, ds in docs.items():
        outs = chain(stages, ds)
        rej = [o for o in outs if isinstance(o, Rejection)]
        res["recipe"][k] = len(rej) / max(1, len(ds))
        # the detail up to its number: "quality_rules: n_words" / "density" / "toxicity"
        res["details"][k] = Counter(re.split(r"[=<>]", o.detail or o.reason)[0].strip() for o in rej).most_common(6)
    dens = next((s for s in stages if s.name == "density"), None)
    if dens is not None and docs.get("main_text") and docs.get("boilerplate"):
        texts = [d.text for d in docs["main_text"] + docs["boilerplate"]]
        y = [1] * len(docs["main_text"]) + [0] * len(docs["boilerplate"])
        res["boilerplate_auc"] = roc_auc(y, dens.score_batch(texts, []))
    res["docs"] = {k: len(v) for k, v in docs.items()}
    groups: dict[str, list[str]] = {}
    for k, g in KEEP_GROUPS.items():
        if k in docs:
            groups.setdefault(g, []).append(k)
    res["groups"] = {g: sum(res["recipe"][k] * len(docs[k]) for k in ks) / max(1, sum(len(docs[k]) for k in ks))
                     for g, ks in groups.items()}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--half", choices=("eval", "tune", "all"), default="eval")
    ap.add_argument("--per-kind", type=int, default=300, help="documents per kind before the half split")
    ap.add_argument("--recipe", default=None)
    ap.add_argument("--details", action="store_true", help="the commonest rejection details per kind")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found")
    docs = load(args.per_kind, args.half)
    stages = recipe_stages(args.recipe)
    res = measure(docs, stages)
    names = [s.name for s in stages]
    print(f"# clean-text false rejects, half={args.half}; must-go kinds below the line (higher = better)")
    print(f"{'kind':16s} {'docs':>5s} " + " ".join(f"{n[:13]:>13s}" for n in names) + f" {'recipe':>7s}")
    for k in list(KEEP_GROUPS) + ["main_text", *GO_KINDS]:
        if k not in docs:
            continue
        if k == "main_text":
            print("-" * (24 + 14 * len(names) + 8))
        row = " ".join(f"{100 * res['operators'][n][k]:12.1f}%" for n in names)
        print(f"{k:16s} {len(docs[k]):5d} {row} {100 * res['recipe'][k]:6.1f}%")
    print("groups (whole recipe): " + ", ".join(f"{g} {100 * v:.1f}%" for g, v in res["groups"].items()))
    if "boilerplate_auc" in res:
        print(f"density ROC-AUC main text vs boilerplate paragraphs: {res['boilerplate_auc']:.3f}")
    if args.details:
        for k, d in res["details"].items():
            print(f"  {k}: " + "; ".join(f"{n} x{c}" for n, c in d))
    if args.json:
        print(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
