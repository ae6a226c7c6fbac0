"""Measure a SentencePiece model on the held-out documents of its training files.

    .venv/bin/python bench/tokenizer.py [--model models/tokenizer/foundry-sp32k-v1.model] [--json]

Prints, per held-out group (Chinese wiki, Chinese reviews, English web,
code-switched): documents, MB, tokens per character, tokens per CJK character,
bytes per token, share of byte-fallback tokens, lossless round trips, and
encode throughput on one thread (one document per call, as the pipeline does;
MB and documents per CPU-second of this process, so a busy machine does not
distort it). Tokens per CJK character is given where CJK characters are at
least a fifth of the text.

``--genres``: the same figures per genre of ``bench/clean_text.py`` (fiction,
dialogue, quotations, lyrics, titles, command pages, verses, reviews, Wikipedia)
plus the code-switched Weibo posts, with tokens per Han character for every
genre that has Han characters (all tokens, punctuation and spaces included,
over Han characters) and the share of each genre's source documents that the
tokenizer was trained on (``in_training_share``; 0 = fully held out).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "models" / "tokenizer" / "build.py"
DEFAULT_MODEL = ROOT / "models" / "tokenizer" / "foundry-sp32k-v1.model"

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")


def _load_build():
    spec = importlib.util.spec_from_file_location("foundry_tokenizer_build", BUILD)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def group_of(file: str, lang: str) -> str:
    if lang in ("zh-en", "en-zh"):
        return "code-switched"
    if lang == "zh":
        return "zh wiki" if file == "zh_wiki_paragraphs" else "zh reviews" if file == "zh_reviews" else "zh web"
    return "en web"


def heldout_groups(data_dir: Path | None = None) -> dict[str, list[str]]:
    build = _load_build()
    groups: dict[str, list[str]] = defaultdict(list)
    kwargs = {} if data_dir is None else {"data_dir": data_dir}
    for file, rec in build.iter_documents(split="heldout", **kwargs):
        groups[group_of(file, rec["lang"])].append(rec["text"])
    return dict(groups)


def measure(sp, texts: list[str]) -> dict:
    byte_ids = {i for i in range(sp.get_piece_size()) if sp.is_byte(i)}
    n_chars = sum(len(t) for t in texts)
    n_cjk = sum(len(_CJK.findall(t)) for t in texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    # CPU time of this (single-threaded) process: stays meaningful on a busy machine
    t0 = time.process_time()
    encoded = [sp.encode(t) for t in texts]
    seconds = max(time.process_time() - t0, 1e-9)
    n_tok = sum(len(ids) for ids in encoded)
    n_fallback = sum(1 for ids in encoded for i in ids if i in byte_ids)
    lossless = sum(1 for t, ids in zip(texts, encoded) if sp.decode(ids) == t)
    return {
        "docs": len(texts),
        "mbytes": round(n_bytes / 1e6, 3),
        "tokens": n_tok,
        "tokens_per_char": round(n_tok / max(n_chars, 1), 3),
        # only where Chinese is a real part of the text
        "tokens_per_cjk_char": round(n_tok / n_cjk, 3) if n_cjk >= 0.2 * n_chars else None,
        "bytes_per_token": round(n_bytes / max(n_tok, 1), 3),
        "byte_fallback_share": round(n_fallback / max(n_tok, 1), 4),
        "lossless_share": round(lossless / max(len(texts), 1), 4),
        "encode_mb_per_cpu_s": round(n_bytes / 1e6 / seconds, 2),
        "encode_docs_per_cpu_s": round(len(texts) / seconds, 1),
    }


_SOURCE_FILE = {"doc_tldr": "zh_en_codeswitch", "short_title_en": "zh_en_codeswitch", "zh_review": "zh_reviews",
                "zh_wiki": "zh_wiki_paragraphs", "lit_poetry_zh": "zh_wiki_paragraphs"}


def genre_groups(per_kind: int = 300) -> dict[str, tuple[list[str], float]]:
    """genre -> (texts, share of their source documents in the tokenizer's training split)."""
    sys.path.insert(0, str(ROOT))
    from bench import clean_text

    build = _load_build()
    kinds = clean_text.clean_kinds(per_kind)
    weibo = [(r["id"], r["text"]) for r in clean_text.read_jsonl("zh_en_codeswitch.jsonl.gz")
             if r["id"].startswith("nlpcc2018")][:per_kind]
    kinds["weibo_codeswitch"] = [(i, t, None) for i, t in weibo]
    out = {}
    for kind, rows in kinds.items():
        file = _SOURCE_FILE.get(kind, "zh_en_codeswitch" if kind == "weibo_codeswitch" else "web_extracted_text")
        trained = [not build.held_out(file, i.split("#")[0]) for i, _, _ in rows]
        out[kind] = ([t for _, t, _ in rows], sum(trained) / max(1, len(trained)))
    return out


def run_genres(model: Path, per_kind: int = 300) -> dict[str, dict]:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model), num_threads=1)
    res = {}
    for g, (texts, trained) in genre_groups(per_kind).items():
        m = measure(sp, texts)
        n_cjk = sum(len(_CJK.findall(t)) for t in texts)
        m["tokens_per_cjk_char"] = round(m["tokens"] / n_cjk, 3) if n_cjk else None
        m["in_training_share"] = round(trained, 3)
        res[g] = m
    return res


def run(model: Path, data_dir: Path | None = None) -> dict[str, dict]:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model), num_threads=1)
    return {g: measure(sp, texts) for g, texts in sorted(heldout_groups(data_dir).items())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--genres", action="store_true", help="per genre of bench/clean_text.py instead")
    args = ap.parse_args(argv)
    res = run_genres(args.model) if args.genres else run(args.model, args.data)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    cols = ["docs", "mbytes", "tokens_per_char", "tokens_per_cjk_char", "bytes_per_token",
            "byte_fallback_share", "lossless_share", "encode_mb_per_cpu_s", "encode_docs_per_cpu_s"]
    if args.genres:
        cols = ["docs", "tokens_per_cjk_char", "bytes_per_token", "byte_fallback_share", "in_training_share"]
    print(f"model {args.model.name}")
    width = max(len(c) for c in cols)
    print(f"{'':{width}s} " + " ".join(f"{g:>14s}" for g in res))
    for c in cols:
        print(f"{c:{width}s} " + " ".join(f"{str(m[c]):>14s}" for m in res.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
