"""Build the toxicity cascade (English + Chinese) and its card figures.

    .venv/bin/python models/toxicity/build.py          # about 5 min CPU

Data (all in /work/shared/data, label 1 = toxic/offensive):

* COLD (Chinese): its own split by id prefix, ``cold-train:*`` for training,
  ``cold-dev:*`` held out.
* Davidson 2017 (English tweets): seeded 80/20 split.
* Jigsaw sample (English Wikipedia comments, 101 rows): seeded 50/50 split.
* Every other labelled set whose terms allow an Apache-2.0 model (``lodo.SETS``:
  Surge, MLMA, ConvAbuse, Reddit misogyny, Civil Comments toxic spans,
  HatemojiBuild, SWSR), all rows, training only. The non-commercial,
  share-alike, copyleft and unlicensed sets are left out of the shipped model
  (``lodo.py`` measures what they would add).
* Generated word salad (streams/sources/synthetic.py, seed 7, 3,000 documents' first
  windows) as benign negatives; the threshold check uses seed 15.
* Benign negatives (label 0): web_extracted_text, web_cc_text, zh_wiki_paragraphs and
  4,000 zh_reviews, split in halves by a hash of the document id; up to 8 plain
  256-character slices of each first-half document are training windows, the second
  half measures how often benign text is flagged. Without them the models, trained on
  tweets and comments only, flagged a fifth of ordinary web prose.

Each training set weighs the same in the lexical model's loss, its two classes half
each; the benign windows weigh as one more set (``lodo.set_weights``): the sets'
sizes, class balances and label schemes differ too much for a plain pooled loss
(COLD and Davidson alone were 60 % of the texts before).

Training examples are the first 256 characters of each normalised text
(``toxicity.first_window``; 19 of 45,604 labelled texts are longer).

Models (see streams/stages/toxicity.py for how they are applied):

1. ``lexical``: hashed character 1..5-grams (2^20 buckets) -> mean of the
   bucket weights + bias = logit. Trained with Adam. Exported as an ONNX graph
   (Gather, ReduceSum, ScatterElements(add), Mul, Add, Sigmoid), float and int8
   (the weight table quantized symmetric per tensor, dequantized after the
   Gather: 4x smaller). The int8 file is shipped when it agrees with the float
   one (max |dp| < 0.01 and same AUC to 3 decimals).
2. ``encoder``: a character CNN (code points hashed to 8191 ids, embedding 32,
   two conv layers of 64 channels (kernel 3, dilation 1 and 2, residual),
   masked max + mean pooling, linear). Exported as ONNX (float); int8 dynamic
   quantization (per channel) is tried and kept only if it is faster and agrees
   (otherwise the int8 file is deleted after the measurement).
3. The cascade band (lexical probabilities for which the encoder is also run)
   and the document threshold are chosen on the held-out splits and written to
   ``toxicity.json``; all figures go to ``metrics.json`` (copied into CARD.md).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from models.toxicity.encoder_model import export_encoder, train_encoder  # noqa: E402
from models.toxicity.eval_metrics import f1_at, roc_auc  # noqa: E402,F401  (teacher.py uses both)
from models.toxicity.lexical_model import export_lexical  # noqa: E402
from models.toxicity.lodo import (SETS, Hashed, calibration_split, platt, predict, salad_windows,  # noqa: E402
                                  set_weights, word_salad)
from models.toxicity.lodo import train as train_weighted  # noqa: E402
from streams.stages import toxicity as T  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("FOUNDRY_SHARED_DATA", ROOT.parent / "shared" / "data"))
SEED = 20240601


# --------------------------------------------------------------------------- data

def read_jsonl(name: str):
    with gzip.open(DATA / name, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def splits() -> dict[str, list[tuple[str, int]]]:
    """train / heldout_en (Davidson) / heldout_jigsaw / heldout_zh (COLD dev): (text, label)."""
    out: dict[str, list[tuple[str, int]]] = {"train": [], "heldout_en": [], "heldout_jigsaw": [], "heldout_zh": [],
                                            "train_en": [], "train_zh": []}
    rng = random.Random(SEED)
    for name, key, frac in (("tox_en_davidson2017.jsonl.gz", "heldout_en", 0.2),
                            ("tox_en_jigsaw_sample.jsonl.gz", "heldout_jigsaw", 0.5)):
        rows = list(read_jsonl(name))
        idx = list(range(len(rows)))
        rng.shuffle(idx)
        held = set(idx[: int(len(rows) * frac)])
        for i, r in enumerate(rows):
            item = (r["text"], int(r["label"]))
            if i in held:
                out[key].append(item)
            else:
                out["train"].append(item)
                out["train_en"].append(item)
    for r in read_jsonl("tox_zh_cold.jsonl.gz"):
        item = (r["text"], int(r["label"]))
        if r["id"].startswith("cold-dev"):
            out["heldout_zh"].append(item)
        else:
            out["train"].append(item)
            out["train_zh"].append(item)
    return out


SPLIT_SETS = ("tox_en_davidson2017", "tox_en_jigsaw_sample", "tox_zh_cold")  # split by splits() above


def training_sets(sp: dict) -> dict[str, list[tuple[str, int]]]:
    """Training rows per set: the splits' train parts of Davidson / Jigsaw / COLD, and every
    other permissive set whole (held-out rows of the first three never enter)."""
    held = {t for k in ("heldout_en", "heldout_jigsaw", "heldout_zh") for t, _ in sp[k]}
    out: dict[str, list[tuple[str, int]]] = {}
    for name, (_, _, permissive) in SETS.items():
        if not permissive:
            continue
        rows = [(r["text"], int(r["label"])) for r in read_jsonl(f"{name}.jsonl.gz")]
        out[name] = [x for x in rows if x[0] not in held] if name in SPLIT_SETS else rows
    return out


# Unlabelled benign text from the web / encyclopedic / review corpora, used as extra
# negatives so that the model sees ordinary web prose (the labelled sets are tweets and
# comments only). Documents are split in two halves by a hash of their id: the first
# half is training data, the second half measures the benign reject share.
BENIGN_SOURCES = (("web_extracted_text.jsonl.gz", None), ("web_cc_text.jsonl.gz", None),
                  ("zh_wiki_paragraphs.jsonl.gz", None), ("zh_reviews.jsonl.gz", 4000))


def doc_half(doc_id: str) -> int:
    return int(hashlib.sha1(doc_id.encode()).hexdigest(), 16) % 2


def benign_docs(half: int) -> list[tuple[str, str]]:
    """(source file, text) of the benign corpora's documents in one half."""
    out = []
    for name, cap in BENIGN_SOURCES:
        rows = [r for r in read_jsonl(name) if doc_half(r["id"]) == half and r["text"].strip()]
        if cap is not None:
            rows = random.Random(SEED).sample(rows, min(cap, len(rows)))
        out += [(name, r["text"]) for r in rows]
    return out


def fixed_windows(text: str, k: int) -> list[str]:
    """Plain WINDOW-character slices of the normalised text, at most k, evenly spaced."""
    t = T.normalize(text)
    wins = [t[i : i + T.WINDOW] for i in range(0, len(t), T.WINDOW)]
    if len(wins) > k:
        idx = np.unique(np.round(np.linspace(0, len(wins) - 1, k)).astype(int))
        wins = [wins[i] for i in idx]
    return wins


def benign_windows(half: int, per_doc: int = 8) -> list[str]:
    return [w for _, t in benign_docs(half) for w in fixed_windows(t, per_doc) if w]


def first_window(text: str) -> str:
    return T.first_window(text)


# --------------------------------------------------------------------------- main

def web_windows(limit: int = 6000) -> list[str]:
    """Windows of the held-out half of the benign corpora (band coverage, benign flag rate)."""
    wins = benign_windows(1)
    random.Random(SEED).shuffle(wins)
    return wins[:limit]


CONVERSATIONAL = ("lit_fiction_en", "lit_dialogue_en", "lit_quote_en", "short_title_en")


def conversational_texts() -> list[str]:
    """Clean fiction, dialogue, quotations and question titles of the *tune* half of
    bench/clean_text.py: the register of the toxicity sets (short, informal), but benign."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("foundry_clean_text", ROOT / "bench" / "clean_text.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    mod.DATA = DATA
    kinds = mod.clean_kinds(300)
    return [t for k in CONVERSATIONAL for i, t, _ in kinds[k] if mod.half_of(i) == "tune"]


def timed(fn, *a, reps: int = 3):
    fn(*a)
    t0 = time.perf_counter()
    for _ in range(reps):
        r = fn(*a)
    return r, (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lexical-epochs", type=int, default=3)
    ap.add_argument("--encoder-epochs", type=int, default=2)
    ap.add_argument("--skip-train", action="store_true", help="reuse the ONNX files in --out; redo the evaluation")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import torch

    torch.set_num_threads(args.threads)

    def log(msg):
        print(msg, flush=True)

    sp = splits()
    neg = benign_windows(0) + salad_windows(3000)  # web/wiki/review windows and generated word salad
    per_set = training_sets(sp)
    tr_texts = [first_window(t) for rows in per_set.values() for t, _ in rows] + neg
    sets_xy = {n: (None, np.array([y for _, y in rows], dtype=np.float32)) for n, rows in per_set.items()}
    tr_y, _ = set_weights(list(per_set), sets_xy, len(neg))
    held = {k: ([first_window(t) for t, _ in sp[k]], np.array([y for _, y in sp[k]]))
            for k in ("heldout_en", "heldout_jigsaw", "heldout_zh")}
    held["heldout_en_all"] = (held["heldout_en"][0] + held["heldout_jigsaw"][0],
                              np.concatenate([held["heldout_en"][1], held["heldout_jigsaw"][1]]))
    log({k: (len(v[1]), int(v[1].sum())) for k, v in held.items()} | {"train": (len(tr_y), int(tr_y.sum()))})
    metrics: dict = {"data": {k: {"n": len(v[1]), "toxic": int(v[1].sum())} for k, v in held.items()}}
    metrics["data"]["train"] = {"n": len(tr_y), "toxic": int(tr_y.sum()), "benign_web_windows": len(neg),
                                "sets": {n: len(rows) for n, rows in per_set.items()}}

    if args.skip_train:  # reuse the exported models, redo the measurements and choices
        old = json.loads((out / "metrics.json").read_text())
        for k in ("lexical_train_seconds", "encoder_train_seconds", "encoder_onnx_vs_torch_max_abs_logit",
                  "lexical_platt"):
            metrics[k] = old.get(k)
        qinfo = old.get("shipped", {}).get("lexical_int8", {})
    else:
        # ---- stage 1
        t0 = time.time()
        # 90 % of each set trains, 10 % fits the probability scale (Platt), as in lodo.py
        bounds = np.cumsum([0] + [len(r) for r in per_set.values()] + [len(neg)])
        names = list(per_set) + ["benign"]
        tr, cal = calibration_split({n: np.arange(bounds[i], bounds[i + 1]) for i, n in enumerate(names)})
        h = Hashed(tr_texts)
        lab = {n: (None, tr_y[tr[n]]) for n in per_set}
        rows = np.concatenate([tr[n] for n in names])
        y_tr, w_tr = set_weights(list(per_set), lab, len(tr["benign"]))
        W, bias = train_weighted(h, rows, y_tr, w_tr, args.lexical_epochs, seed=SEED)
        crow = np.concatenate([cal[n] for n in names])
        cy, cw = set_weights(list(per_set), {n: (None, tr_y[cal[n]]) for n in per_set}, len(cal["benign"]))
        a, c = platt(predict(h, crow, W, bias), cy, cw)
        W, bias = (a * W).astype(np.float32), float(a * bias + c)
        metrics["lexical_platt"] = {"scale": round(a, 4), "shift": round(c, 4), "calibration_texts": len(crow)}
        log(f"lexical Platt scale {a:.3f} shift {c:.3f}")
        metrics["lexical_train_seconds"] = round(time.time() - t0, 1)
        export_lexical(W, bias, out / "lexical.fp32.onnx", int8=False)
        qinfo = export_lexical(W, bias, out / "lexical.int8.onnx", int8=True)

        # ---- stage 2
        t0 = time.time()
        enc = train_encoder(tr_texts, tr_y, args.encoder_epochs, log, seed=SEED)
        metrics["encoder_train_seconds"] = round(time.time() - t0, 1)
        export_encoder(enc, out / "encoder.fp32.onnx")
        with torch.no_grad():
            x = T.encode_chars(held["heldout_zh"][0][:256])
            ref = enc(torch.from_numpy(x)).numpy()
        sess = T.cpu_session(out / "encoder.fp32.onnx", 1)
        diff = float(np.abs(sess.run(["logit"], {"x": x})[0] - ref).max())
        log(f"encoder ONNX vs torch max |logit diff| {diff:.2e}")
        assert diff < 1e-3
        metrics["encoder_onnx_vs_torch_max_abs_logit"] = diff

    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(out / "encoder.fp32.onnx"), str(out / "encoder.int8.onnx"), per_channel=True,
                     weight_type=QuantType.QInt8, op_types_to_quantize=["Conv", "MatMul"])

    # ---- compare float / int8 variants on the held-out sets
    web = web_windows()
    variants = {}
    for lex in ("fp32", "int8"):
        for encv in ("fp32", "int8"):
            cfg = {"lexical_file": f"lexical.{lex}.onnx", "encoder_file": f"encoder.{encv}.onnx",
                   "band": [0.0, 1.0], "max_windows": 32, "threshold": 0.5}
            (out / "toxicity.json").write_text(json.dumps(cfg))
            sc = T.ToxicityScorer(out, intra_op_num_threads=1)
            variants[(lex, encv)] = sc
    res_q = {}
    lex_cache: dict = {}
    enc_cache: dict = {}
    for key, sc in variants.items():
        if key[0] not in lex_cache:
            _, t_lex = timed(sc.lexical_logits, web[:2000])
            lex_cache[key[0]] = ({k: sc.lexical_logits(texts) for k, (texts, _) in held.items()}, 2000 / t_lex)
        if key[1] not in enc_cache:
            _, t_enc = timed(sc.encoder_logits, web[:500], reps=2)
            enc_cache[key[1]] = ({k: sc.encoder_logits(texts) for k, (texts, _) in held.items()}, 500 / t_enc)
        r = {}
        for k, (texts, y) in held.items():
            z_l, z_e = lex_cache[key[0]][0][k], enc_cache[key[1]][0][k]
            r[k] = {"lex_auc": roc_auc(y, z_l), "enc_auc": roc_auc(y, z_e), "lex": z_l, "enc": z_e}
        r["lex_windows_per_s_1thread"] = lex_cache[key[0]][1]
        r["enc_windows_per_s_1thread"] = enc_cache[key[1]][1]
        res_q[key] = r
    qm = {}
    for key, r in res_q.items():
        name = f"lexical_{key[0]}+encoder_{key[1]}"
        b = res_q[("fp32", "fp32")]
        qm[name] = {
            "lex_windows_per_s_1thread": round(r["lex_windows_per_s_1thread"], 1),
            "enc_windows_per_s_1thread": round(r["enc_windows_per_s_1thread"], 1),
            "max_abs_dprob_lexical": float(max(np.abs(1 / (1 + np.exp(-r[k]["lex"])) - 1 / (1 + np.exp(-b[k]["lex"]))).max()
                                              for k in held)),
            "max_abs_dprob_encoder": float(max(np.abs(1 / (1 + np.exp(-r[k]["enc"])) - 1 / (1 + np.exp(-b[k]["enc"]))).max()
                                              for k in held)),
            **{f"{k}_lex_auc": round(r[k]["lex_auc"], 4) for k in held},
            **{f"{k}_enc_auc": round(r[k]["enc_auc"], 4) for k in held},
        }
    metrics["quantization"] = qm
    log(json.dumps(qm, indent=1))
    lex_choice = "int8" if (qm["lexical_int8+encoder_fp32"]["max_abs_dprob_lexical"] < 0.02 and all(
        abs(qm["lexical_int8+encoder_fp32"][f"{k}_lex_auc"] - qm["lexical_fp32+encoder_fp32"][f"{k}_lex_auc"]) < 2e-3
        for k in held if len(held[k][1]) >= 200)) else "fp32"  # not the 50-text Jigsaw half: one tie moves it
    e8, e32 = qm["lexical_fp32+encoder_int8"], qm["lexical_fp32+encoder_fp32"]
    enc_choice = "int8" if (e8["enc_windows_per_s_1thread"] > 1.1 * e32["enc_windows_per_s_1thread"]
                            and e8["max_abs_dprob_encoder"] < 0.02) else "fp32"
    metrics["shipped"] = {"lexical": lex_choice, "encoder": enc_choice, "lexical_int8": qinfo}
    log(f"shipping lexical {lex_choice}, encoder {enc_choice}")

    # ---- cascade band and threshold
    r = res_q[(lex_choice, enc_choice)]
    sc = variants[(lex_choice, enc_choice)]
    web_z = sc.lexical_logits(web)
    web_p = 1 / (1 + np.exp(-web_z))
    bands = {}
    for lo, hi in ((0.0, 1.0), (0.02, 0.98), (0.05, 0.95), (0.1, 0.9), (0.2, 0.8), (0.3, 0.7), (1.1, 1.1)):
        row = {}
        for k in held:
            zl, ze = r[k]["lex"], r[k]["enc"]
            pl = 1 / (1 + np.exp(-zl))
            inb = (pl >= lo) & (pl <= hi)
            z = np.where(inb, (zl + ze) / 2, zl)
            p = 1 / (1 + np.exp(-z))
            row[k] = {"auc": round(roc_auc(held[k][1], z), 4), "share_in_band": round(float(inb.mean()), 3),
                      "f1@0.5": round(f1_at(held[k][1], p, 0.5), 4)}
        row["web_share_in_band"] = round(float(((web_p >= lo) & (web_p <= hi)).mean()), 3)
        bands[f"{lo}-{hi}"] = row
    metrics["bands"] = bands
    metrics["encoder_only_auc"] = {k: round(r[k]["enc_auc"], 4) for k in held}
    log(json.dumps(bands, indent=1))
    # the narrowest band that keeps both languages within 0.005 AUC of running the encoder everywhere
    full = bands["0.0-1.0"]
    ok = [k for k, row in bands.items() if k not in ("0.0-1.0", "1.1-1.1") and all(
        row[h]["auc"] >= full[h]["auc"] - 0.005 for h in ("heldout_en", "heldout_zh"))]
    best = min(ok, key=lambda k: (bands[k]["web_share_in_band"], bands[k]["heldout_en"]["share_in_band"]))
    band = [float(v) for v in best.split("-")]
    log(f"band {band}")
    cfg = {"lexical_file": f"lexical.{lex_choice}.onnx", "encoder_file": f"encoder.{enc_choice}.onnx",
           "band": band, "max_windows": 32, "threshold": 0.5,
           "window_chars": T.WINDOW, "ngram_max": T.NMAX, "hash_bits": T.BITS, "seed": SEED}
    (out / "toxicity.json").write_text(json.dumps(cfg, indent=1) + "\n")
    sc = T.ToxicityScorer(out, intra_op_num_threads=1)
    web_casc, _ = sc.window_probs(web)
    docs = [t for _, t in benign_docs(1)]
    random.Random(SEED).shuffle(docs)
    doc_scores = np.array(sc.score_texts(docs[:1500]))
    held_p = {k: sc.window_probs(texts)[0] for k, (texts, _) in held.items()}
    salad = np.array(sc.score_texts(word_salad(2000)))  # another seed than the training salad
    talk = np.array(sc.score_texts(conversational_texts()))
    thr_rows = {}
    for thr in (0.5, 0.6, 0.7, 0.8, 0.9):
        row = {"benign_web_windows_flagged": round(float((web_casc > thr).mean()), 4),
               "benign_docs_rejected": round(float((doc_scores > thr).mean()), 4),
               "word_salad_rejected": round(float((salad > thr).mean()), 4),
               "clean_conversational_rejected": round(float((talk > thr).mean()), 4)}
        for k, (texts, y) in held.items():
            row[f"{k}_f1"] = round(f1_at(y, held_p[k], thr), 4)
        thr_rows[str(thr)] = row
    metrics["thresholds"] = thr_rows
    log(json.dumps(thr_rows, indent=1))
    # default threshold: the lowest one that rejects at most 2 % of held-out benign documents
    # and at most 1 % of generated word salad and 3 % of clean conversational text
    thr = min([float(t) for t, r in thr_rows.items()
               if r["benign_docs_rejected"] <= 0.02 and r["word_salad_rejected"] <= 0.01
               and r["clean_conversational_rejected"] <= 0.03] or [0.9])
    cfg["threshold"] = thr
    (out / "toxicity.json").write_text(json.dumps(cfg, indent=1) + "\n")
    log(f"threshold {thr}")
    final = {}
    for k, (texts, y) in held.items():
        p, pl = sc.window_probs(texts)
        final[k] = {"auc_cascade": round(roc_auc(y, p), 4), "auc_lexical": round(roc_auc(y, pl), 4),
                    "f1@0.5": round(f1_at(y, p, 0.5), 4), f"f1@{thr}": round(f1_at(y, p, thr), 4)}
    metrics["final"] = final
    log(json.dumps(final, indent=1))
    for f in ("lexical.fp32.onnx", "lexical.int8.onnx", "encoder.fp32.onnx", "encoder.int8.onnx"):
        metrics.setdefault("file_bytes", {})[f] = (out / f).stat().st_size
    # ship what the operator uses, plus the float lexical model as the reference for the int8 one
    if enc_choice == "fp32":
        (out / "encoder.int8.onnx").unlink()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")


if __name__ == "__main__":
    main()
