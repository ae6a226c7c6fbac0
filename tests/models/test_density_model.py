"""The shipped density model: it loads from the repository and ranks main-text
paragraphs of real HTML pages above their boilerplate paragraphs (ROC-AUC >= 0.85
on pages of the evaluation half: sites the models and the combination never saw)."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from streams.stages import density as D
from tests.conftest import shared_data


def _build_module():
    spec = importlib.util.spec_from_file_location("foundry_density_build", D.MODEL_DIR / "build.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_model_files_load():
    params = json.loads(D.DEFAULT_PARAMS.read_text())
    assert params["features"] == D.FEATURE_NAMES
    assert D.DEFAULT_MODEL.stat().st_size < 5e6
    lm = D.ByteLM(intra_op_num_threads=1)
    bpb = lm.line_bpb(["The quick brown fox jumps over the lazy dog.", "zqxj vkwp qqzx jjjk"])
    assert 0 < bpb[0] < bpb[1] < 9
    assert (D.MODEL_DIR / "CARD.md").is_file()


def test_paragraph_auc_on_heldout_pages():
    data = shared_data()
    build = _build_module()
    build.DATA = data
    pages = [r for r in build.read_jsonl("html_pages.jsonl.gz")
             if (r.get("gold_text") or "").strip() and build.page_half(build.page_host(r)) == 1]
    rows = []
    for r in pages:
        gn = build.norm_text(r["gold_text"])
        gs = build.word_shingles(gn, 3)
        seen = set()
        for par in build.html_paragraphs(r["html"]):
            if len(par) < 30 or par in seen:
                continue
            seen.add(par)
            y = build.label_paragraph(par, gn, gs)
            if y is not None:
                rows.append((par, y))
    y = np.array([lab for _, lab in rows])
    assert 0.2 < y.mean() < 0.8 and len(rows) > 5000
    scores = D.DensityScorer(intra_op_num_threads=1).score_texts([p for p, _ in rows])
    assert build.roc_auc(y, scores) >= 0.85


def test_lm_is_deterministic():
    lm = D.ByteLM(intra_op_num_threads=1)
    lines = ["Ein ganz normaler Satz.", "这是一个普通的句子。", "x" * 500]
    a = lm.line_bpb(lines)
    b = lm.line_bpb(lines[::-1])[::-1]
    assert np.array_equal(a, b) or np.abs(a - b).max() < 1e-6


@pytest.mark.parametrize("bad", ["\ud800 broken surrogate", "\x00\x01\x02"])
def test_odd_input_does_not_crash(bad):
    assert len(D.DensityScorer(intra_op_num_threads=1).score_texts([bad])) == 1
