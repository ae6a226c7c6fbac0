"""The shipped toxicity models: they load from the repository, reach the held-out
targets (ROC-AUC >= 0.90 English, >= 0.88 Chinese) and the int8 files agree
with the float ones."""
from __future__ import annotations

import importlib.util
import json
import random

import numpy as np
import pytest

from streams.stages import toxicity as T
from tests.conftest import shared_data

MODEL_DIR = T.MODEL_DIR


def _build_module():
    spec = importlib.util.spec_from_file_location("foundry_toxicity_build", MODEL_DIR / "build.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def heldout():
    data = shared_data()
    build = _build_module()
    build.DATA = data
    sp = build.splits()
    rng = random.Random(1)
    out = {}
    for key, n in (("heldout_en", 1500), ("heldout_zh", 1500)):
        rows = sp[key]
        rows = rng.sample(rows, min(n, len(rows)))
        out[key] = ([build.first_window(t) for t, _ in rows], np.array([y for _, y in rows]))
    out["roc_auc"] = build.roc_auc
    return out


@pytest.fixture(scope="module")
def scorer():
    return T.ToxicityScorer(intra_op_num_threads=1)


def test_model_files_present_and_small():
    cfg = json.loads((MODEL_DIR / "toxicity.json").read_text())
    files = [MODEL_DIR / cfg["lexical_file"], MODEL_DIR / cfg["encoder_file"]]
    for f in files:
        assert f.is_file(), f
    total = sum(f.stat().st_size for f in MODEL_DIR.glob("*.onnx"))
    assert total < 30e6, f"ONNX files take {total / 1e6:.1f} MB"
    assert (MODEL_DIR / "CARD.md").is_file()


def test_heldout_auc_meets_targets(heldout, scorer):
    auc = heldout["roc_auc"]
    texts, y = heldout["heldout_en"]
    p, _ = scorer.window_probs(texts)
    assert auc(y, p) >= 0.90
    texts, y = heldout["heldout_zh"]
    p, _ = scorer.window_probs(texts)
    assert auc(y, p) >= 0.88


def test_int8_agrees_with_float(heldout):
    texts = heldout["heldout_en"][0][:500] + heldout["heldout_zh"][0][:500]
    ids, seg, inv = T.hash_ngrams(texts)
    feeds = {"ids": ids, "seg": seg, "inv_len": inv}
    p32 = T.cpu_session(MODEL_DIR / "lexical.fp32.onnx", 1).run(["prob"], feeds)[0]
    p8 = T.cpu_session(MODEL_DIR / "lexical.int8.onnx", 1).run(["prob"], feeds)[0]
    assert np.abs(p32 - p8).max() < 0.02
    if (MODEL_DIR / "encoder.int8.onnx").exists():  # only shipped when the build found it faster
        x = T.encode_chars(texts[:200])
        e32 = T.cpu_session(MODEL_DIR / "encoder.fp32.onnx", 1).run(["prob"], {"x": x})[0]
        e8 = T.cpu_session(MODEL_DIR / "encoder.int8.onnx", 1).run(["prob"], {"x": x})[0]
        assert np.abs(e32 - e8).max() < 0.06


def test_scores_are_deterministic_and_batch_independent(scorer):
    texts = ["a perfectly ordinary sentence about the weather", "今天的会议推迟到下午三点。", "x " * 900]
    alone = [scorer.score_texts([t])[0] for t in texts]
    together = scorer.score_texts(texts)
    again = scorer.score_texts(list(reversed(texts)))[::-1]
    assert alone == together == again
