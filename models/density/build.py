"""Build the information-density model: a byte-level LM in ONNX, a boilerplate
n-gram model in ONNX, and the combination weights that turn them and cheap
signals into a score.

    .venv/bin/python models/density/build.py            # everything (about 6 min CPU)
    .venv/bin/python models/density/build.py --skip-lm  # keep byte_lm.onnx, redo the rest (about 1 min)

Steps (all seeded; the same data gives the same files):

1. LM corpus: main text from /work/shared/data that cannot overlap the
   evaluation pages (html_pages.jsonl.gz): web_extracted_text without the
   subsets that were made from those same pages (aeb, readability, newspaper)
   and without any document sharing word 8-gram shingles with a gold text;
   the CCNet/C4 parts of web_cc_text (not the raw WET sample); Chinese
   Wikipedia paragraphs; a sample of Chinese reviews. Lines are cut into
   chunks of at most 128 bytes, each starting with a BOS symbol, exactly as the
   operator feeds them.
2. Train a causal dilated CNN over bytes (torch), with a two-level softmax
   (high nibble, then low nibble given the high nibble) so the output layer
   costs 32 logits per byte instead of 256.
3. Export to ONNX by writing the graph with onnx.helper, check it against torch,
   try int8 dynamic quantization (per channel) and keep it only if it is faster
   and agrees.
4. Paragraph set: the text of each block-level element of each HTML page,
   labelled main text when it occurs in the page's gold text (exact after
   normalisation, or >= 80 % of its word 3-grams) and boilerplate when <= 20 %
   (in between: dropped). Pages are split in two halves *by site* (URL host):
   everything below is fitted on the first half; ROC-AUC is reported on the
   second half, whose sites were never seen.
5. Boilerplate model: the toxicity stage's hashed character n-gram linear
   model (reused code), trained on the fit half's paragraphs (main = 1).
   Its logits for the combination fit are out-of-fold (two site folds).
6. Combination: logistic regression of FEATURE_NAMES (streams/stages/density.py)
   on the fit half; threshold = the score that keeps 90 % of the fit half's
   main-text paragraphs. Ablations (LM only, shape only, ...) go to metrics.json.
7. Write byte_lm.onnx, boiler.onnx, density.json and metrics.json.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from models.density.byte_lm_train import CHUNK, CH, DILATIONS, EMB, KERNEL, export_onnx, train_lm, try_quantize  # noqa: E402,E501
from models.density.paragraph_set import (  # noqa: E402,F401  (the density model test reads the set through build)
    html_paragraphs, label_paragraph, norm_text, page_half, page_host, word_shingles)
from models.toxicity import lexical_model  # noqa: E402
from models.toxicity.eval_metrics import roc_auc  # noqa: E402  (ties ranked equal; nan for one class)
from streams.stages import density as D  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("FOUNDRY_SHARED_DATA", ROOT.parent / "shared" / "data"))
SEED = 20240601

LINE_BYTES = 64  # bytes of each sampled line the LM scores (128 cost 25 % more, same AUC: CARD.md)


# --------------------------------------------------------------------------- data

def read_jsonl(name: str):
    with gzip.open(DATA / name, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def lm_corpus(max_bytes_per_group: dict[str, int]) -> tuple[list[str], dict]:
    """Lines of main text for the LM, none of it from (or overlapping) the evaluation pages."""
    gold8: set[str] = set()
    urls: set[str] = set()
    for r in read_jsonl("html_pages.jsonl.gz"):
        gold8 |= word_shingles(r.get("gold_text") or "", 8)
        if r.get("url"):
            urls.add(r["url"])
    groups: dict[str, list[str]] = {}
    dropped = 0

    def add(group: str, text: str) -> None:
        groups.setdefault(group, []).append(text)

    for r in read_jsonl("web_extracted_text.jsonl.gz"):
        subset = r["id"].split(":")[0]
        if subset in ("aeb", "readability", "newspaper") or (r.get("url") and r["url"] in urls):
            continue
        sh = word_shingles(r["text"], 8)
        if sh and len(sh & gold8) / len(sh) > 0.02:
            dropped += 1
            continue
        lang = r.get("lang") or "xx"
        add("web_" + (lang if lang in ("en", "de") else "other"), r["text"])
    for r in read_jsonl("web_cc_text.jsonl.gz"):
        if not r["id"].startswith("dolma-ccmain-2019-30"):
            add("web_en", r["text"])
    for r in read_jsonl("zh_wiki_paragraphs.jsonl.gz"):
        add("zh_wiki", r["text"])
    reviews = [r["text"] for r in read_jsonl("zh_reviews.jsonl.gz")]
    random.Random(SEED).shuffle(reviews)
    for t in reviews[:20000]:
        add("zh_reviews", t)

    rng = random.Random(SEED)
    lines: list[str] = []
    stats = {}
    for g in sorted(groups):
        docs = groups[g]
        rng.shuffle(docs)
        budget = max_bytes_per_group.get(g, 0)
        used = 0
        for doc in docs:
            if used >= budget:
                break
            ls, _ = D.split_lines(doc)
            for ln in ls:
                lines.append(ln)
                used += len(ln.encode("utf-8"))
        stats[g] = {"docs_available": len(docs), "bytes_used": used}
    stats["dropped_for_overlap"] = dropped
    return lines, stats


def eval_paragraphs(min_chars: int = 30, pages: int | None = None, seed: int = SEED,
                    half: int | None = None) -> list[tuple[str, str, int, str]]:
    """(page id, paragraph, label, site) for the html pages that have a gold text."""
    rows = [r for r in read_jsonl("html_pages.jsonl.gz") if (r.get("gold_text") or "").strip()]
    if half is not None:
        rows = [r for r in rows if page_half(page_host(r)) == half]
    if pages is not None:
        rows = random.Random(seed).sample(rows, min(pages, len(rows)))
    out = []
    for r in rows:
        gn = norm_text(r["gold_text"])
        gs = word_shingles(gn, 3)
        seen = set()
        host = page_host(r)
        for par in html_paragraphs(r["html"]):
            if len(par) < min_chars or par in seen:
                continue
            seen.add(par)
            y = label_paragraph(par, gn, gs)
            if y is not None:
                out.append((r["id"], par, y, host))
    return out


def per_page_auc(pages, y, s) -> float:
    by: dict[str, list[int]] = {}
    for i, p in enumerate(pages):
        by.setdefault(p, []).append(i)
    vals = []
    for idx in by.values():
        yy = np.asarray(y)[idx]
        if 0 < yy.sum() < len(yy):
            vals.append(roc_auc(yy, np.asarray(s)[idx]))
    return float(np.mean(vals))


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (LBFGS on standardised features), weights for raw features."""
    import torch

    Xt = torch.tensor(X, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.float64)
    mu, sd = Xt.mean(0), Xt.std(0) + 1e-9
    Z = (Xt - mu) / sd
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(Z @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w_raw = (w / sd).detach().numpy()
    b_raw = float(b.detach().numpy()[0] - (mu / sd).detach().numpy() @ w.detach().numpy())
    return w_raw, b_raw


# --------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--skip-lm", action="store_true", help="reuse the byte_lm.onnx in --out")
    ap.add_argument("--cache", default="/tmp/foundry-density-cache")
    ap.add_argument("--line-bytes", type=int, default=LINE_BYTES,
                    help="bytes of each line the LM scores (the combiner is fitted to this)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    metrics: dict = {}
    mpath = out / "metrics.json"
    if mpath.exists():
        metrics = json.loads(mpath.read_text())

    def log(msg):
        print(msg, flush=True)

    lm_path = out / "byte_lm.onnx"
    if not args.skip_lm:
        budget = {"web_en": 1_300_000, "web_de": 400_000, "web_other": 200_000,
                  "zh_wiki": 500_000, "zh_reviews": 300_000}
        lines, stats = lm_corpus(budget)
        log(f"LM corpus: {len(lines)} lines {stats}")
        t0 = time.time()
        model = train_lm(lines, args.epochs, args.threads, log, seed=SEED)
        train_s = time.time() - t0
        export_onnx(model, lm_path)
        # check ONNX against torch on held-back text (the eval pages are never used for training)
        import torch

        probe = [p for _, p, _, _ in eval_paragraphs(pages=8)][:200]
        x, y, m = D.lm_batch(probe, CHUNK)
        with torch.no_grad():
            ref = model(torch.from_numpy(x), torch.from_numpy(y)).numpy()
        lm = D.ByteLM(lm_path, intra_op_num_threads=args.threads)
        (got,) = lm._sess.run(["nll"], {"x": x, "y": y})
        diff = float(np.abs((ref - got) * m).max())
        log(f"ONNX vs torch max |nll diff| = {diff:.2e}")
        assert diff < 1e-3
        metrics["lm"] = {"corpus": stats, "train_seconds": round(train_s, 1), "epochs": args.epochs,
                         "arch": {"emb": EMB, "channels": CH, "kernel": KERNEL, "dilations": list(DILATIONS),
                                  "params": int(sum(p.numel() for p in model.parameters()))},
                         "onnx_vs_torch_max_abs_nll": diff, "onnx_bytes": lm_path.stat().st_size}
        metrics["lm"]["quantization"] = try_quantize(lm_path, probe, log)

    # ---- evaluation paragraphs; pages split by site: fit half / eval half
    cache_file = cache / "paragraphs-v2.json"
    if cache_file.exists():
        paras = [tuple(r) for r in json.loads(cache_file.read_text())]
    else:
        paras = eval_paragraphs()
        cache_file.write_text(json.dumps(paras))
    pages = np.array([p for p, _, _, _ in paras])
    texts = [t for _, t, _, _ in paras]
    y = np.array([l for _, _, l, _ in paras])
    hosts = [h for _, _, _, h in paras]
    half = np.array([page_half(h) for h in hosts])
    fold = np.array([page_half(h, salt="fold") for h in hosts])
    fit, ev = half == 0, half == 1

    # ---- boilerplate n-gram model: out-of-fold logits on the fit half, final model on all of it
    wins = [D_windows(t) for t in texts]
    boiler = np.zeros(len(texts))
    quiet = lambda msg: None  # noqa: E731
    for f in (0, 1):
        tr, te = np.flatnonzero(fit & (fold != f)), np.flatnonzero(fit & (fold == f))
        W, bias = lexical_model.train_lexical([wins[i] for i in tr], y[tr], 3, quiet, seed=SEED)
        boiler[te] = _lexical_logits(W, bias, [wins[i] for i in te])
    tr = np.flatnonzero(fit)
    W, bias = lexical_model.train_lexical([wins[i] for i in tr], y[tr], 3, log, seed=SEED)
    boiler_path = out / "boiler.onnx"
    lexical_model.export_lexical(W, bias, boiler_path, int8=True)
    bm = D.BoilerplateModel(boiler_path, intra_op_num_threads=args.threads)
    boiler[ev] = bm.logits([texts[i] for i in np.flatnonzero(ev)])

    lm = D.ByteLM(lm_path, intra_op_num_threads=args.threads, max_line_bytes=args.line_bytes)
    t0 = time.time()
    bpb = lm.line_bpb(texts)
    log(f"bpb of {len(texts)} paragraphs in {time.time() - t0:.1f}s; main {bpb[y == 1].mean():.3f} "
        f"boilerplate {bpb[y == 0].mean():.3f}")
    X = D.line_features(texts, bpb, boiler)
    w, b = fit_logistic(X[fit], y[fit])
    z = X @ w + b
    thr = float(np.round(np.quantile(1 / (1 + np.exp(-z[fit & (y == 1)])), 0.10), 2))
    params = {"features": D.FEATURE_NAMES, "weights": [round(float(v), 6) for v in w], "bias": round(b, 6),
              "gibberish_bpb": 6.5, "min_zlib_ratio": 0.2, "max_lines": 8, "max_line_bytes": args.line_bytes,
              "threshold": thr}
    (out / "density.json").write_text(json.dumps(params, indent=1) + "\n")
    scorer = D.DensityScorer(lm_path, out / "density.json", boiler_path=boiler_path,
                             intra_op_num_threads=args.threads)
    s = np.array(scorer.score_texts(texts))
    res = {"paragraphs": int(len(y)), "main": int(y.sum()), "boilerplate": int(len(y) - y.sum()),
           "pages": len(set(pages)), "eval_pages": len(set(pages[ev])), "eval_paragraphs": int(ev.sum()),
           "threshold": thr}
    res["auc_eval_half"] = roc_auc(y[ev], s[ev])
    res["auc_eval_half_per_page_mean"] = per_page_auc(pages[ev], y[ev], s[ev])
    res["auc_fit_half"] = roc_auc(y[fit], s[fit])
    ablations = {"lm_bpb_only": -bpb, "boiler_only": boiler}
    cols = {n: i for i, n in enumerate(D.FEATURE_NAMES)}
    lm_cols = [cols["lm_bpb"], cols["lm_bpb_sq"]]
    for name, keep in (("shape_only", list(range(D.N_SHAPE))),
                       ("shape+lm", list(range(D.N_SHAPE)) + lm_cols),
                       ("shape+boiler", list(range(D.N_SHAPE)) + [cols["boiler_logit"]])):
        wa, ba = fit_logistic(X[fit][:, keep], y[fit])
        ablations[name] = X[:, keep] @ wa + ba
    res["ablations_auc_eval_half"] = {k: round(roc_auc(y[ev], v[ev]), 4) for k, v in ablations.items()}
    for t in (0.2, 0.3, 0.4, 0.5, thr):
        res[f"eval_keep_main@{t}"] = round(float((s[ev & (y == 1)] >= t).mean()), 4)
        res[f"eval_keep_boilerplate@{t}"] = round(float((s[ev & (y == 0)] >= t).mean()), 4)
    gib = "qzx vbnmk wqpo lkjh zzxq ptrw bnmv cxzq wplk jhgf dsaq mnbv xcvq"
    res["bpb_examples"] = {"gibberish": float(lm.line_bpb([gib])[0]),
                           "main_median": float(np.median(bpb[y == 1])),
                           "boilerplate_median": float(np.median(bpb[y == 0])),
                           "main_ascii_over_6.5": float(np.mean([(x > 6.5 and D.ascii_share(t) > 0.9)
                                                                 for t, x, l in zip(texts, bpb, y) if l == 1]))}
    metrics["eval"] = res
    metrics["boiler_model"] = {"train_paragraphs": int(fit.sum()), "onnx_bytes": boiler_path.stat().st_size}
    log(json.dumps(res, indent=1))
    mpath.write_text(json.dumps(metrics, indent=1) + "\n")


def D_windows(text: str) -> str:
    from streams.stages.toxicity import first_window

    return first_window(text)


def _lexical_logits(W: np.ndarray, bias: float, wins: list[str]) -> np.ndarray:
    from streams.stages.toxicity import hash_ngrams

    ids, seg, inv = hash_ngrams(wins)
    sums = np.zeros(len(wins))
    np.add.at(sums, seg, W[ids].sum(0))
    return sums * inv + bias


if __name__ == "__main__":
    main()
