"""Leave-one-dataset-out measurement of the toxicity lexical model, and the shipped
lexical model's training (``build_lexical_lodo``).

    .venv/bin/python models/toxicity/lodo.py [--cap 3000] [--epochs 3] [--json out.json] [--shipped]

For every labelled set in ../shared/data (``tox_*``) the hashed character n-gram
model (the cascade's first stage, same features as the operator) is trained on
the other sets plus benign web / wiki / review windows (the build's first half),
and scored on the left-out set: ROC-AUC there is the figure for "a source the
model never saw". Two training pools: ``permissive`` (the sets whose terms allow
an Apache-2.0 model, the default shipped model's pool) and ``all`` (adds the
non-commercial, share-alike, copyleft and unlicensed sets, to measure what they
would add). ``--shipped`` also scores the shipped cascade on every set (it was
trained on Davidson, Jigsaw and COLD train, so only the other sets are unseen).

Each training set weighs the same in the loss, its two classes half each (the
label schemes and class balances differ a lot between sets: MLMA is 88 % toxic,
Stormfront 11 %); the benign windows weigh as one more set of label 0.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from models.toxicity.eval_metrics import roc_auc  # noqa: E402
from streams.stages import toxicity as T  # noqa: E402

SEED = 20240601
# set -> (language, licence, permissive for an Apache-2.0 model)
SETS = {
    "tox_en_davidson2017": ("en", "MIT", True),
    "tox_en_jigsaw_sample": ("en", "CC0 data / Apache-2.0 repo", True),
    "tox_en_hateval2019": ("en", "CC BY-NC 4.0", False),
    "tox_en_stormfront": ("en", "CC BY-SA 3.0 ES (share-alike)", False),
    "tox_en_ethos": ("en", "GPL-3.0", False),
    "tox_en_surge_toxicity": ("en", "MIT", True),
    "tox_en_mlma": ("en", "MIT", True),
    "tox_en_convabuse": ("en", "CC BY 4.0", True),
    "tox_en_reddit_misogyny": ("en", "MIT", True),
    "tox_en_civil_toxic_spans": ("en", "CC0 1.0", True),
    "tox_en_beyondgender": ("en", "none (research only)", False),
    "tox_en_hatemoji_build": ("en", "CC BY 4.0", True),
    "tox_zh_cold": ("zh", "Apache-2.0", True),
    "tox_zh_swsr": ("zh", "MIT", True),
    "tox_zh_beyondgender": ("zh", "none (research only)", False),
    "tox_zh_taiwan_political": ("zh", "none (authors keep rights)", False),
}


def load_sets(read_jsonl, cap: int | None) -> dict[str, tuple[list[str], np.ndarray]]:
    """set -> (first windows, labels), at most ``cap`` texts per set (seeded sample)."""
    out = {}
    for name in SETS:
        rows = [(T.first_window(r["text"]), int(r["label"])) for r in read_jsonl(f"{name}.jsonl.gz")]
        rows = [r for r in rows if r[0]]
        if cap is not None and len(rows) > cap:
            rows = random.Random(SEED).sample(rows, cap)
        out[name] = ([t for t, _ in rows], np.array([y for _, y in rows], dtype=np.float32))
    return out


class Hashed:
    """Every text's n-gram buckets, hashed once (flat ids + per-text offsets)."""

    def __init__(self, texts: list[str], chunk: int = 2048):
        ids, lens = [], []
        for s in range(0, len(texts), chunk):
            part = texts[s : s + chunk]
            i, seg, _ = T.hash_ngrams(part)
            order = np.argsort(np.tile(seg, T.NMAX), kind="stable")
            ids.append(i.reshape(-1)[order].astype(np.int32))
            lens.append(np.bincount(seg, minlength=len(part)) * T.NMAX)
        self.ids = np.concatenate(ids)
        self.lens = np.concatenate(lens).astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lens)[:-1]])

    def batch(self, idx: np.ndarray):
        import torch

        parts = [self.ids[self.offsets[i] : self.offsets[i] + self.lens[i]] for i in idx]
        flat = torch.from_numpy(np.concatenate(parts).astype(np.int64))
        offs = torch.from_numpy(np.concatenate([[0], np.cumsum(self.lens[idx])[:-1]]))
        w = torch.from_numpy(np.repeat(1.0 / self.lens[idx], self.lens[idx]).astype(np.float32))
        return flat, offs, w


def train(h: Hashed, rows: np.ndarray, y: np.ndarray, wt: np.ndarray, epochs: int, seed: int = SEED,
          lr: float = 0.05) -> tuple[np.ndarray, float]:
    """Weighted logistic loss over the mean bucket weight (the operator's lexical model)."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    emb = torch.nn.EmbeddingBag(1 << T.BITS, 1, mode="sum", sparse=True)
    torch.nn.init.zeros_(emb.weight)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SparseAdam(list(emb.parameters()), lr=lr)
    opt_b = torch.optim.Adam([b], lr=lr)
    yt, wtt = torch.from_numpy(y.astype(np.float32)), torch.from_numpy((wt / wt.mean()).astype(np.float32))
    for _ in range(epochs):
        perm = rng.permutation(len(rows))
        for s in range(0, len(perm), 512):
            bi = perm[s : s + 512]
            flat, offs, w = h.batch(rows[bi])
            logit = emb(flat, offs, per_sample_weights=w).squeeze(1) + b
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(logit, yt[bi], reduction="none")
                    * wtt[bi]).mean()
            opt.zero_grad()
            opt_b.zero_grad()
            loss.backward()
            opt.step()
            opt_b.step()
    return emb.weight.detach().numpy()[:, 0].copy(), float(b.detach()[0])


def platt(z: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float]:
    """Weighted logistic fit of y on a * z + c (Newton steps): the scale that turns the mean
    bucket weight into a probability. Fitted on texts the model did not train on."""
    w = np.ones(len(z)) if w is None else np.asarray(w, dtype=np.float64) / np.mean(w)
    X = np.stack([np.asarray(z, dtype=np.float64), np.ones(len(z))], 1)
    theta = np.zeros(2)
    for _ in range(50):
        p = 1 / (1 + np.exp(-X @ theta))
        g = X.T @ (w * (p - y)) + 1e-6 * theta
        H = (X * (w * p * (1 - p))[:, None]).T @ X + 1e-6 * np.eye(2)
        step = np.linalg.solve(H, g)
        theta -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(theta[0]), float(theta[1])


def calibration_split(rows_per_set: dict[str, np.ndarray], frac: float = 0.1, seed: int = SEED):
    """(train rows, calibration rows) per set: a seeded ``frac`` of each set is kept out of
    training to fit the probability scale."""
    rng = np.random.default_rng(seed)
    tr, cal = {}, {}
    for n, rows in rows_per_set.items():
        perm = rng.permutation(len(rows))
        k = max(1, int(len(rows) * frac))
        cal[n], tr[n] = rows[np.sort(perm[:k])], rows[np.sort(perm[k:])]
    return tr, cal


def predict(h: Hashed, rows: np.ndarray, W: np.ndarray, bias: float) -> np.ndarray:
    out = np.empty(len(rows))
    for k, i in enumerate(rows):
        out[k] = W[h.ids[h.offsets[i] : h.offsets[i] + h.lens[i]]].mean() + bias
    return out


def set_weights(names: list[str], sets: dict, benign_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and loss weights for the concatenation of ``names`` and the benign windows
    (``sets[name][1]``: that set's labels, in order)."""
    ys, ws = [], []
    for n in names:
        y = np.asarray(sets[n][1], dtype=np.float32)
        pos = max(1.0, float(y.sum()))
        neg = max(1.0, float(len(y) - y.sum()))
        ys.append(y)
        ws.append(np.where(y == 1, 0.5 / pos, 0.5 / neg))
    ys.append(np.zeros(benign_n, dtype=np.float32))
    ws.append(np.full(benign_n, 1.0 / max(1, benign_n)))
    return np.concatenate(ys), np.concatenate(ws)


def pr_table(res: dict, pool: str, thresholds=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)) -> dict:
    """Precision / recall of the left-out-set predictions at each threshold, per language:
    every set's scores come from the model that never saw it (sets of 200 or more)."""
    out: dict = {}
    for lang in ("en", "zh"):
        ys, ps = [], []
        for n, r in res["sets"].items():
            if r["lang"] == lang and r["n"] >= 200 and pool in r:
                ys.append(np.asarray(r["y"]))
                ps.append(1 / (1 + np.exp(-np.asarray(r[pool]["oof"]))))
        y, p = np.concatenate(ys), np.concatenate(ps)
        for t in thresholds:
            tp = float(((p > t) & (y == 1)).sum())
            out.setdefault(lang, {})[str(t)] = {"precision": round(tp / max(1.0, float((p > t).sum())), 3),
                                                "recall": round(tp / max(1.0, float(y.sum())), 3),
                                                "flagged": round(float((p > t).mean()), 3)}
    return out


def word_salad(n: int = 3000, seed: int = 15) -> list[str]:
    """Generated Zipf word salad (English, Chinese, code-switched) from the synthetic source;
    seed 15 is the calibration check, ``salad_windows`` trains on another seed."""
    from streams.sources.synthetic import SyntheticConfig, SyntheticSource

    return [d.text for d in SyntheticSource(SyntheticConfig(n_docs=n, seed=seed, dup_rate=0.0))]


SALAD_TRAIN_SEED = 7


def salad_windows(n: int) -> list[str]:
    """First windows of generated word salad (another seed than the check's), as benign
    negatives: nonsense is low quality, not toxic, and without them 13 % of it scored > 0.5."""
    return [T.first_window(t) for t in word_salad(n, SALAD_TRAIN_SEED)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cap", type=int, default=3000, help="texts per set (seeded sample)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--pools", default="permissive,all")
    ap.add_argument("--shipped", action="store_true", help="also score the shipped cascade on every set")
    ap.add_argument("--model-dir", default=None, help="the cascade --shipped scores (default: the shipped one)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from models.toxicity import build as B

    t0 = time.time()
    sets = load_sets(B.read_jsonl, args.cap)
    benign = B.benign_windows(0)
    random.Random(SEED).shuffle(benign)
    benign = benign[: 2 * args.cap] + salad_windows(args.cap // 4)
    names = list(SETS)
    texts = [t for n in names for t in sets[n][0]] + benign
    start = {}
    pos = 0
    for n in names:
        start[n] = np.arange(pos, pos + len(sets[n][0]))
        pos += len(sets[n][0])
    benign_rows = np.arange(pos, pos + len(benign))
    ys_all = np.concatenate([sets[n][1] for n in names] + [np.zeros(len(benign), dtype=np.float32)])
    h = Hashed(texts)
    print(f"# {len(texts)} texts hashed in {time.time() - t0:.0f}s", flush=True)
    res: dict = {"cap": args.cap, "epochs": args.epochs, "sets": {}}
    shipped = T.ToxicityScorer(args.model_dir, intra_op_num_threads=args.threads) if args.shipped else None
    for held in names:
        lang = SETS[held][0]
        row = {"lang": lang, "licence": SETS[held][1], "n": len(sets[held][1]),
               "toxic": int(sets[held][1].sum()), "y": sets[held][1].astype(int).tolist()}
        for pool in args.pools.split(","):
            train_names = [n for n in names if n != held and (pool == "all" or SETS[n][2])]
            tr, cal = calibration_split({**{n: start[n] for n in train_names}, "benign": benign_rows})
            labels = {n: (None, ys_all[tr[n]]) for n in train_names}
            rows = np.concatenate([tr[n] for n in train_names] + [tr["benign"]])
            y, wt = set_weights(train_names, labels, len(tr["benign"]))
            W, bias = train(h, rows, y, wt, args.epochs, lr=args.lr)
            crow = np.concatenate([cal[n] for n in train_names] + [cal["benign"]])
            cy, cw = set_weights(train_names, {n: (None, ys_all[cal[n]]) for n in train_names}, len(cal["benign"]))
            a, c = platt(predict(h, crow, W, bias), cy, cw)
            z = a * predict(h, start[held], W, bias) + c
            row[pool] = {"auc": round(roc_auc(sets[held][1], z), 4),
                         "oof": [round(float(v), 4) for v in z]}
        if shipped is not None:
            row["shipped_auc"] = round(roc_auc(sets[held][1], shipped.score_texts(sets[held][0])), 4)
        res["sets"][held] = row
        print(f"{held:28s} {lang} n={row['n']:5d} " + " ".join(
            f"{p}={row[p]['auc']:.3f}" for p in args.pools.split(",")) +
            (f" shipped={row['shipped_auc']:.3f}" if shipped else "") + f"  ({time.time() - t0:.0f}s)", flush=True)
    for pool in args.pools.split(","):
        for lang in ("en", "zh"):
            vals = [r[pool]["auc"] for n, r in res["sets"].items() if r["lang"] == lang and r["n"] >= 200]
            res.setdefault("mean", {})[f"{pool}_{lang}"] = round(float(np.mean(vals)), 4)
    print("mean ROC-AUC over held-out sets (sets of 200 or more):", res["mean"])
    for pool in args.pools.split(","):
        res.setdefault("pr", {})[pool] = pr_table(res, pool)
        print(f"precision / recall of left-out predictions ({pool}):", json.dumps(res["pr"][pool]))
    if shipped is not None:
        salad = np.array(shipped.score_texts(word_salad()))
        res["word_salad"] = {"n": len(salad), "median": round(float(np.median(salad)), 4),
                             "p99": round(float(np.quantile(salad, 0.99)), 4),
                             "rejected_at_threshold": round(float((salad > shipped.default_threshold).mean()), 4),
                             "threshold": shipped.default_threshold}
        print("word salad:", res["word_salad"])
    if args.json:
        Path(args.json).write_text(json.dumps(res))


if __name__ == "__main__":
    main()
