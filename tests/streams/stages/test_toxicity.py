"""The toxicity operator: registry, verdicts on clear cases in English and
Chinese, long documents, rejection records."""
from __future__ import annotations

import hashlib

import pytest

from schemas import CuratedDocument, Reason, Rejection
from streams.stages import toxicity as T
from streams.stages.registry import build_stage, operator_names

# Content warning: the toxic examples below are deliberately offensive.
TOXIC = {
    "en": "shut the fuck up you stupid bitch, nobody wants your worthless ass here",
    "zh": "你就是个傻逼，脑残垃圾，滚出去吧",
}
BENIGN = {
    "en": "The museum opens at nine in the morning and offers free guided tours on weekends.",
    "zh": "今天天气很好，我们下午一起去公园散步，然后去图书馆借几本书。",
}


def doc(text: str, i: int = 0) -> CuratedDocument:
    return CuratedDocument(id=f"d{i}", text=text, source="test", recipe_version="r1",
                           content_hash=hashlib.sha256(text.encode()).hexdigest())


@pytest.fixture(scope="module")
def stage():
    return build_stage({"op": "toxicity", "intra_op_num_threads": 1})


def test_registered():
    assert "toxicity" in operator_names()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_clear_cases_on_the_right_side(stage, lang):
    toxic, benign = stage.process_batch([doc(TOXIC[lang], 1), doc(BENIGN[lang], 2)])
    assert isinstance(toxic, Rejection)
    assert toxic.reason == Reason.TOXIC.value and toxic.stage == "toxicity"
    assert toxic.score is not None and toxic.score > stage.threshold
    assert isinstance(benign, CuratedDocument)
    assert benign.scores["toxicity"] < stage.threshold


def test_toxic_passage_inside_long_document_is_found(stage):
    filler = " ".join([BENIGN["en"]] * 40)
    text = filler + " " + TOXIC["en"] + " " + filler
    (out,) = stage.process_batch([doc(text)])
    assert isinstance(out, Rejection)
    (clean,) = stage.process_batch([doc(filler + " " + filler)])
    assert isinstance(clean, CuratedDocument)


def test_window_sampling_is_bounded_and_deterministic():
    long_text = "word " * 200_000
    w1 = T.windows(long_text, 32)
    assert len(w1) == 32 and w1 == T.windows(long_text, 32)
    assert T.windows("", 32) == [""]


def test_threshold_and_threads_are_parameters():
    st = build_stage({"op": "toxicity", "threshold": 0.99, "intra_op_num_threads": 2, "use_encoder": False})
    assert st.threshold == 0.99
    assert st.scorer.threads == 2 and not st.scorer.use_encoder
    (out,) = st.process_batch([doc(BENIGN["zh"])])
    assert isinstance(out, CuratedDocument)


def test_empty_and_odd_text(stage):
    outs = stage.process_batch([doc(" "), doc("\x00\ud7ff\U0001f600 ok"), doc("&amp; @someone http://x.y/z")])
    assert len(outs) == 3
