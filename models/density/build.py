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
import functools
import gzip
import hashlib
import json
import math
import os
import random
import re
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from streams.stages import density as D  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("FOUNDRY_SHARED_DATA", ROOT.parent / "shared" / "data"))
SEED = 20240601

# LM architecture
EMB, CH, KERNEL, DILATIONS = 32, 48, 3, (1, 2, 4, 8)
CHUNK = 128  # bytes per LM training sequence
LINE_BYTES = 64  # bytes of each sampled line the LM scores (128 cost 25 % more, same AUC: CARD.md)


# --------------------------------------------------------------------------- data

def read_jsonl(name: str):
    with gzip.open(DATA / name, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


_W = re.compile(r"\w+")
_Q = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "–": "-", "—": "-", "\u00a0": " "})


def norm_text(t: str) -> str:
    return " ".join(t.translate(_Q).lower().split())


def word_shingles(t: str, k: int) -> set[str]:
    w = _W.findall(t.lower())
    if not w:
        return set()
    return {" ".join(w[i : i + k]) for i in range(max(1, len(w) - k + 1))}


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


def chunks(lines: list[str]) -> list[bytes]:
    out = []
    for ln in lines:
        b = ln.encode("utf-8")
        for i in range(0, len(b), CHUNK):
            out.append(b[i : i + CHUNK])
    return out


# --------------------------------------------------------------------------- model

def make_torch_lm():
    import torch
    from torch import nn

    class ByteCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(257, EMB)
            self.convs = nn.ModuleList(
                nn.Conv1d(EMB if i == 0 else CH, CH, KERNEL, dilation=d) for i, d in enumerate(DILATIONS))
            self.hi = nn.Linear(CH, 16)
            self.hi_emb = nn.Embedding(16, CH)
            self.lo = nn.Linear(CH, 16)

        def hidden(self, x):
            h = self.emb(x).transpose(1, 2)
            for i, (conv, d) in enumerate(zip(self.convs, DILATIONS)):
                r = torch.relu(conv(nn.functional.pad(h, ((KERNEL - 1) * d, 0))))
                h = r if i == 0 else h + r
            return h.transpose(1, 2)

        def forward(self, x, y):
            h = self.hidden(x)
            yh, yl = y // 16, y % 16
            a = torch.log_softmax(self.hi(h), -1).gather(-1, yh.unsqueeze(-1)).squeeze(-1)
            u = torch.relu(h + self.hi_emb(yh))
            b = torch.log_softmax(self.lo(u), -1).gather(-1, yl.unsqueeze(-1)).squeeze(-1)
            return -(a + b)

    return ByteCNN()


def export_onnx(model, path: Path) -> None:
    import onnx
    from onnx import TensorProto as TP
    from onnx import helper as H
    from onnx import numpy_helper as NH

    sd = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    inits, nodes = [], []

    def init(name, arr):
        inits.append(NH.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op, ins, outs, **kw):
        nodes.append(H.make_node(op, ins, outs, **kw))
        return outs[0]

    init("emb", sd["emb.weight"])
    cur = node("Transpose", [node("Gather", ["emb", "x"], ["e"])], ["h0"], perm=[0, 2, 1])
    for i, d in enumerate(DILATIONS):
        w, b = init(f"c{i}w", sd[f"convs.{i}.weight"]), init(f"c{i}b", sd[f"convs.{i}.bias"])
        cv = node("Conv", [cur, w, b], [f"cv{i}"], dilations=[d], pads=[(KERNEL - 1) * d, 0], kernel_shape=[KERNEL])
        r = node("Relu", [cv], [f"r{i}"])
        cur = r if i == 0 else node("Add", [cur, r], [f"h{i + 1}"])
    h = node("Transpose", [cur], ["ht"], perm=[0, 2, 1])
    init("sixteen", np.array(16, dtype=np.int64))
    init("ax", np.array([-1], dtype=np.int64))
    yh = node("Div", ["y", "sixteen"], ["yh"])
    yl = node("Mod", ["y", "sixteen"], ["yl"], fmod=0)
    init("hiw", sd["hi.weight"].T)
    init("hib", sd["hi.bias"])
    lph = node("LogSoftmax", [node("Add", [node("MatMul", [h, "hiw"], ["hm"]), "hib"], ["hl"])], ["lph"], axis=-1)
    a = node("GatherElements", [lph, node("Unsqueeze", [yh, "ax"], ["yhu"])], ["ga"], axis=2)
    init("hiemb", sd["hi_emb.weight"])
    u = node("Relu", [node("Add", [h, node("Gather", ["hiemb", yh], ["he"])], ["hu"])], ["u"])
    init("low", sd["lo.weight"].T)
    init("lob", sd["lo.bias"])
    lpl = node("LogSoftmax", [node("Add", [node("MatMul", [u, "low"], ["lm"]), "lob"], ["ll"])], ["lpl"], axis=-1)
    b = node("GatherElements", [lpl, node("Unsqueeze", [yl, "ax"], ["ylu"])], ["gb"], axis=2)
    s = node("Squeeze", [node("Add", [a, b], ["gab"]), "ax"], ["gs"])
    node("Neg", [s], ["nll"])
    g = H.make_graph(nodes, "foundry_byte_lm",
                     [H.make_tensor_value_info("x", TP.INT64, ["B", "L"]),
                      H.make_tensor_value_info("y", TP.INT64, ["B", "L"])],
                     [H.make_tensor_value_info("nll", TP.FLOAT, ["B", "L"])], inits)
    m = H.make_model(g, opset_imports=[H.make_opsetid("", 17)], producer_name="token-foundry density build")
    m.ir_version = 8
    m.doc_string = (f"byte-level causal CNN LM emb={EMB} ch={CH} k={KERNEL} dil={list(DILATIONS)}; "
                    "inputs x=[BOS]+bytes[:-1], y=bytes; output nll (nats) per position")
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def train_lm(lines: list[str], epochs: int, threads: int, log) -> object:
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    data = chunks(lines)
    rng = np.random.default_rng(SEED)
    model = make_torch_lm()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    n_batches = math.ceil(len(data) / 64) * epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=n_batches, pct_start=0.1)
    lens = np.array([len(c) for c in data])
    t0 = time.time()
    step = 0
    for ep in range(epochs):
        perm = rng.permutation(len(data))
        # length-bucketed batches of 64
        blocks = [perm[i : i + 64 * 32] for i in range(0, len(perm), 64 * 32)]
        batches = []
        for blk in blocks:
            blk = blk[np.argsort(lens[blk], kind="stable")]
            batches += [blk[i : i + 64] for i in range(0, len(blk), 64)]
        rng.shuffle(batches)
        tot = cnt = 0.0
        for bi in batches:
            x, y, m = _batch(data, bi)
            xt, yt, mt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m)
            nll = model(xt, yt)
            loss = (nll * mt).sum() / mt.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            tot += loss.item() * float(mt.sum())
            cnt += float(mt.sum())
            if step % 200 == 0:
                log(f"  lm step {step}/{n_batches} bits/byte {tot / cnt / math.log(2):.3f} ({time.time() - t0:.0f}s)")
        log(f"  lm epoch {ep}: train bits/byte {tot / cnt / math.log(2):.3f} ({time.time() - t0:.0f}s)")
    model.eval()
    return model


def _batch(data: list[bytes], idx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = [data[i] for i in idx]
    width = max(len(r) for r in rows)
    x = np.zeros((len(rows), width), np.int64)
    y = np.zeros((len(rows), width), np.int64)
    m = np.zeros((len(rows), width), np.float32)
    for j, r in enumerate(rows):
        a = np.frombuffer(r, np.uint8)
        y[j, : len(a)] = a
        x[j, 0] = D.BOS
        x[j, 1 : len(a)] = a[:-1]
        m[j, : len(a)] = 1
    return x, y, m


# --------------------------------------------------------------------------- evaluation set

_BLOCK = set(("p div li td th h1 h2 h3 h4 h5 h6 br tr ul ol table section article header footer nav aside "
              "blockquote pre dd dt dl form figure figcaption main title option button label address hr center"
              ).split())
_SKIP = {"script", "style", "noscript", "template", "svg", "head", "iframe", "select", "textarea"}


class _Paragraphs(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.buf: list[str] = []
        self.out: list[str] = []
        self.skip = 0

    def flush(self):
        t = " ".join("".join(self.buf).split())
        if t:
            self.out.append(t)
        self.buf = []

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP:
            self.skip += 1
        elif tag in _BLOCK:
            self.flush()

    def handle_endtag(self, tag):
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCK:
            self.flush()

    def handle_startendtag(self, tag, attrs):
        if tag in _BLOCK:
            self.flush()

    def handle_data(self, data):
        if not self.skip:
            self.buf.append(data)


def html_paragraphs(html: str) -> list[str]:
    """Text of each block-level element (script/style/head dropped), whitespace collapsed."""
    p = _Paragraphs()
    try:
        p.feed(html)
        p.close()
    except Exception:  # a broken page still yields what was parsed
        pass
    p.flush()
    return p.out


def label_paragraph(par: str, gold_norm: str, gold_sh: set[str]) -> int | None:
    """1 = main text (in the gold text), 0 = boilerplate, None = ambiguous."""
    p = norm_text(par)
    if p in gold_norm:
        return 1
    sh = word_shingles(p, 3)
    if not sh:
        return None
    cov = len(sh & gold_sh) / len(sh)
    return 1 if cov >= 0.8 else 0 if cov <= 0.2 else None


def page_host(rec: dict) -> str:
    """The site of an html page (its URL host without www.), or its id when it has no URL."""
    url = rec.get("url")
    if url:
        host = urlparse(url).netloc.lower()
        return host[4:] if host.startswith("www.") else host
    return rec["id"]


def page_half(host: str, salt: str = "") -> int:
    """Pages are split by site, so no site has pages on both sides."""
    return int(hashlib.sha1((salt + host).encode()).hexdigest(), 16) % 2


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


def roc_auc(y, s) -> float:
    """ROC-AUC with tied scores ranked as equal (the toxicity build's implementation)."""
    return _load_toxicity_build().roc_auc(y, s)


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
        model = train_lm(lines, args.epochs, args.threads, log)
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
    tox_build = _load_toxicity_build()
    wins = [D_windows(t) for t in texts]
    boiler = np.zeros(len(texts))
    quiet = lambda msg: None  # noqa: E731
    for f in (0, 1):
        tr, te = np.flatnonzero(fit & (fold != f)), np.flatnonzero(fit & (fold == f))
        W, bias = tox_build.train_lexical([wins[i] for i in tr], y[tr], 3, quiet)
        boiler[te] = _lexical_logits(W, bias, [wins[i] for i in te])
    tr = np.flatnonzero(fit)
    W, bias = tox_build.train_lexical([wins[i] for i in tr], y[tr], 3, log)
    boiler_path = out / "boiler.onnx"
    tox_build.export_lexical(W, bias, boiler_path, int8=True)
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


@functools.cache
def _load_toxicity_build():
    """The toxicity build script (its lexical trainer / exporter are reused here)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("foundry_toxicity_build", ROOT / "models" / "toxicity" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def try_quantize(lm_path: Path, probe: list[str], log) -> dict:
    """int8 dynamic quantization (per channel); report agreement and speed, keep fp32 unless int8 wins."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    q_path = lm_path.with_suffix(".int8.onnx")
    try:
        quantize_dynamic(str(lm_path), str(q_path), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["Conv", "MatMul"])
    except Exception as exc:  # pragma: no cover - depends on the onnxruntime version
        return {"error": str(exc)[:300]}
    res = {}
    speeds = {}
    vals = {}
    for name, path in (("fp32", lm_path), ("int8", q_path)):
        lm = D.ByteLM(path, intra_op_num_threads=1)
        lm.line_bpb(probe)
        t0 = time.perf_counter()
        for _ in range(3):
            vals[name] = lm.line_bpb(probe)
        dt = (time.perf_counter() - t0) / 3
        speeds[name] = sum(len(p.encode()[:CHUNK]) for p in probe) / dt / 1e3
    res["kB_per_s_1thread"] = {k: round(v, 1) for k, v in speeds.items()}
    res["max_abs_bpb_diff"] = float(np.abs(vals["fp32"] - vals["int8"]).max())
    res["int8_bytes"] = q_path.stat().st_size
    res["kept"] = "int8" if speeds["int8"] > 1.1 * speeds["fp32"] and res["max_abs_bpb_diff"] < 0.1 else "fp32"
    if res["kept"] == "int8":
        os.replace(q_path, lm_path)
    else:
        q_path.unlink()
    log(f"quantization: {res}")
    return res


if __name__ == "__main__":
    main()
