from schemas import CuratedDocument, RawDocument, Rejection
from streams.stages.validate import Validator, content_hash, normalize


def _v(**kw):
    return Validator("rv", max_bytes=100, **kw)


def test_hash_ignores_whitespace_runs_and_unicode_form():
    assert content_hash("a  b\n\tc ") == content_hash("a b c")
    assert content_hash("caf\u00e9") == content_hash("cafe\u0301")  # NFC
    assert content_hash("a b c") != content_hash("a b d")
    assert normalize("  x \n y ") == "x y"


def test_kept_document_carries_hash_and_version():
    out = _v()(RawDocument(id="1", text="hello world", source="s", meta={"raw_ref": "0:5"}))
    assert isinstance(out, CuratedDocument)
    assert out.content_hash == content_hash("hello world") and out.recipe_version == "rv"
    assert out.meta["raw_ref"] == "0:5"


def test_reasons():
    cases = {
        "empty": RawDocument(id="e", text=" \n\t", source="s"),
        "too_large": RawDocument(id="l", text="x" * 101, source="s"),
        "invalid_utf8": RawDocument(id="u", text="bad \ud800 surrogate", source="s"),
        "missing_text": RawDocument(id="m", text="", source="s", defect="missing_text", defect_detail="no text"),
        "malformed": RawDocument(id="j", text="", source="s", defect="weird-unknown-defect"),
    }
    for reason, raw in cases.items():
        out = _v()(raw)
        assert isinstance(out, Rejection) and out.reason == reason, (reason, out)
        assert out.id == raw.id and out.stage == "validate"
