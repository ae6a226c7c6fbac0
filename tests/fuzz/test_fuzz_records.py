"""Every record decoder, fed hostile bytes, answers with a record or a SchemaError (whose reason
becomes a ledger row upstream), never another exception."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import CuratedDocument, RawDocument, Reason, Rejection, SchemaError
from tests.fuzz.hostile import deep_json, hostile_record, json_value

RECORDS = [RawDocument, CuratedDocument, Rejection]


def _decode_or_reason(cls, data: bytes):
    try:
        return cls.decode(data)
    except SchemaError as err:
        assert isinstance(err.reason, Reason)
        return err.reason


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=400), hostile_record()), cls=st.sampled_from(RECORDS))
def test_hostile_bytes_decode_to_a_record_or_a_reason(data, cls):
    _decode_or_reason(cls, data)


@settings(max_examples=200, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(["id", "text", "source", "content_hash", "recipe_version", "meta",
                                               "url", "scores", "tokens_b64", "v", "schema"]), json_value),
       cls=st.sampled_from(RECORDS))
def test_hostile_fields_in_a_valid_envelope(fields, cls):
    obj = {"schema": cls.SCHEMA, "v": 1, **fields}
    out = _decode_or_reason(cls, json.dumps(obj).encode("utf-8", "surrogatepass"))
    if isinstance(out, CuratedDocument):  # the hash names tar members: only hex gets through
        assert all(c in "0123456789abcdef" for c in out.content_hash)


@pytest.mark.parametrize("cls", RECORDS)
def test_json_nested_too_deeply_is_malformed_not_a_recursion_error(cls):
    assert _decode_or_reason(cls, deep_json()) is Reason.MALFORMED
    assert _decode_or_reason(cls, b"[" * 200_000) is Reason.MALFORMED


@pytest.mark.parametrize("bad_hash", ["../../etc/passwd", "abc/def0123456789", "ABCDEF0123456789", "", "0" * 65,
                                      "0123456789abcdef\n"])
def test_a_curated_document_whose_hash_is_not_hex_is_refused(bad_hash):
    doc = CuratedDocument(id="../x", text="t", source="s", content_hash=bad_hash, recipe_version="r")
    assert _decode_or_reason(CuratedDocument, doc.encode()) is Reason.MALFORMED
