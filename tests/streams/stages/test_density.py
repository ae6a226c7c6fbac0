"""The density operator: real paragraphs above boilerplate, repeated lines and
gibberish penalised, registry and rejection records, hot reload."""
from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from schemas import CuratedDocument, Reason, Rejection
from streams.stages import density as D
from streams.stages.registry import build_stage, operator_names

REAL_EN = ("The city council voted on Tuesday to extend the bus network into the northern suburbs, "
           "after a two-year study found that most residents there drive to work because no route "
           "reaches them. The first new lines are expected to open next spring.")
REAL_ZH = ("研究人员在论文中指出，这种新型电池在低温环境下仍能保持百分之八十以上的容量，"
           "明显优于目前市场上的同类产品。他们计划明年与汽车厂商合作开展道路测试。")
BOILERPLATE = [
    "Home | News | Sport | Weather | Contact us",
    "Share on Facebook Share on Twitter Email",
    "© 2019 All Rights Reserved",
    "Sign in Register Subscribe",
    "首页 新闻 体育 财经 登录 注册",
]
NAV_DOC = "\n".join(["Home", "About", "Products", "Blog", "Careers", "Contact", "Privacy Policy", "Terms of Use",
                     "Sitemap", "Login"])
GIBBERISH = "qzx vbnmk wqpo lkjh zzxq ptrw bnmv cxzq wplk jhgf dsaq mnbv xcvq " * 3


def doc(text: str, i: int = 0) -> CuratedDocument:
    return CuratedDocument(id=f"d{i}", text=text, source="test", recipe_version="r1",
                           content_hash=hashlib.sha256(text.encode()).hexdigest())


@pytest.fixture(scope="module")
def stage():
    return build_stage({"op": "density", "intra_op_num_threads": 1})


def test_registered():
    assert "density" in operator_names()


def test_real_paragraphs_beat_boilerplate(stage):
    s = stage.score_batch([REAL_EN, REAL_ZH] + BOILERPLATE, [])
    real, boiler = s[:2], s[2:]
    assert min(real) > max(boiler)
    assert min(real) >= stage.threshold
    assert max(boiler) < stage.threshold


def test_navigation_repetition_and_gibberish_rejected(stage):
    repeated = "\n".join([REAL_EN] + ["Click here to subscribe to our newsletter."] * 12)
    outs = stage.process_batch([doc(NAV_DOC, 1), doc(GIBBERISH, 2), doc(REAL_EN, 3), doc(repeated, 4)])
    nav, gib, real, rep = outs
    assert isinstance(nav, Rejection) and nav.reason == Reason.LOW_DENSITY.value and nav.stage == "density"
    assert isinstance(gib, Rejection)
    assert isinstance(real, CuratedDocument) and 0.0 <= real.scores["density"] <= 1.0
    s_rep = stage.score_batch([repeated], [])[0]
    assert s_rep < real.scores["density"]


def test_repeated_line_share():
    lines, rep = D.split_lines("a b c\nx\na b c\n\n  a   b c ")
    assert lines == ["a b c", "x"]
    assert rep == pytest.approx(10 / 16)


def test_deterministic_and_batch_independent(stage):
    texts = [REAL_EN, NAV_DOC, REAL_ZH + "\n" + REAL_EN, GIBBERISH]
    alone = [stage.score_batch([t], [])[0] for t in texts]
    assert alone == stage.score_batch(texts, []) == stage.score_batch(texts[::-1], [])[::-1]


def test_long_document_is_sampled():
    lines = [f"Paragraph {i}: " + REAL_EN for i in range(500)]
    sample = D.sample_lines(lines, 16)
    assert len(sample) == 16 and sample[0] == lines[0] and sample[-1] == lines[-1]


def test_reload_if_changed(tmp_path):
    model = tmp_path / "byte_lm.onnx"
    shutil.copy(D.DEFAULT_MODEL, model)
    st = build_stage({"op": "density", "model_path": str(model), "intra_op_num_threads": 1})
    before = st.score_batch([REAL_EN], [])
    assert st.reload_if_changed() is False
    shutil.copy(D.DEFAULT_MODEL, tmp_path / "new.onnx")
    os.replace(tmp_path / "new.onnx", model)
    st_mtime = os.stat(model).st_mtime
    os.utime(model, (st_mtime + 5, st_mtime + 5))
    assert st.reload_if_changed() is True
    assert st.score_batch([REAL_EN], []) == before


def test_empty_text(stage):
    assert stage.score_batch(["", "\n\n  \n"], []) == [0.0, 0.0]


def test_short_documents_are_judged_by_the_short_text_threshold(stage):
    # Alone, a question title or a one-line review is not a web page's headline or menu item.
    title, review = "Why do Malaysians have Cantonese surnames?", "质量还好，但整体一般"
    s_title, s_review = stage.score_batch([title, review], [])
    assert min(s_title, s_review) < stage.threshold  # the paragraph model alone would drop them
    outs = stage.process_batch([doc(title, 1), doc(review, 2), doc(GIBBERISH, 3)])
    assert isinstance(outs[0], CuratedDocument) and isinstance(outs[1], CuratedDocument)
    gib = outs[2]
    assert isinstance(gib, Rejection) and "short-text threshold" in gib.detail
    # a long document with the same score as the title is judged by the main threshold
    long_st = build_stage({"op": "density", "intra_op_num_threads": 1, "short_bytes": 10})
    assert isinstance(long_st.process(doc(title, 4)), Rejection)
    assert stage.short_bytes == 1000 and stage.short_threshold < stage.threshold


def test_short_threshold_is_a_parameter():
    st = build_stage({"op": "density", "intra_op_num_threads": 1, "short_threshold": 0.99, "short_bytes": 500})
    out = st.process(doc(REAL_EN, 1))
    assert isinstance(out, Rejection) and "0.99" in out.detail and "500" in out.detail


def test_worker_keeps_its_model_and_rejections_name_it(tmp_path):
    model = tmp_path / "byte_lm.onnx"
    shutil.copy(D.DEFAULT_MODEL, model)
    st = build_stage({"op": "density", "model_path": str(model), "threshold": 0.99, "short_threshold": 0.99})
    digest = st.scorer.lm.digest
    assert len(digest) == 12
    (rej,) = st.process_batch([CuratedDocument(id="d", text="home | about | contact", source="s",
                                               content_hash="0" * 16, recipe_version="r")])
    assert rej.detail.endswith(f"model={digest}")
    # A replaced file is not picked up by the stage itself (auto_reload is off): same model, same verdicts.
    model.write_bytes(model.read_bytes() + b"\0")
    os.utime(model, (os.stat(model).st_mtime + 5,) * 2)
    st.process_batch([CuratedDocument(id="e", text=REAL_EN, source="s", content_hash="1" * 16, recipe_version="r")])
    assert st.scorer.lm.digest == digest
