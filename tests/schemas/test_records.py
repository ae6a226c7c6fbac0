import json

import numpy as np
import pytest

from schemas import CuratedDocument, RawDocument, Reason, Rejection, SchemaError, ShardManifest, Topics


def test_roundtrip_keeps_every_field():
    raw = RawDocument(id="a", text="héllo 世界", source="s", url="u", lang="zh", meta={"k": 1})
    assert RawDocument.decode(raw.encode()) == raw


def test_tokens_roundtrip_as_uint32():
    doc = CuratedDocument(id="a", text="t", source="s", content_hash="0" * 32, recipe_version="r")
    doc.set_tokens([1, 2, 70000], "sp-x")
    back = CuratedDocument.decode(doc.encode())
    assert back.tokens.tolist() == [1, 2, 70000] and back.n_tokens == 3
    assert back.tokens.dtype == np.dtype("<u4")


@pytest.mark.parametrize("payload,reason", [
    (b"not json", Reason.MALFORMED),
    (b'{"id": "\xff"}', Reason.INVALID_UTF8),
    (b"[1, 2]", Reason.MALFORMED),
    (json.dumps({"schema": "raw_document", "v": 2, "id": "a", "text": "t", "source": "s"}).encode(),
     Reason.UNSUPPORTED_SCHEMA),
    (json.dumps({"schema": "rejection", "v": 1, "id": "a"}).encode(), Reason.UNSUPPORTED_SCHEMA),
    (json.dumps({"schema": "raw_document", "v": 1, "id": "a", "source": "s"}).encode(), Reason.MALFORMED),
    (json.dumps({"schema": "raw_document", "v": 1, "id": "a", "text": 5, "source": "s"}).encode(), Reason.MALFORMED),
    (None, Reason.MALFORMED),
])
def test_bad_messages_raise_schema_error_with_reason(payload, reason):
    with pytest.raises(SchemaError) as exc:
        RawDocument.decode(payload)
    assert exc.value.reason == reason


def test_rejection_reason_must_be_known():
    bad = Rejection(id="a", reason="because", stage="x", recipe_version="r").encode()
    with pytest.raises(SchemaError):
        Rejection.decode(bad)
    ok = Rejection(id="a", reason="duplicate", stage="dedup", recipe_version="r", duplicate_of="b")
    assert Rejection.decode(ok.encode()).duplicate_of == "b"


def test_newer_version_of_manifest_is_refused():
    m = ShardManifest(shard="p000-000000000000.tar", path="/x", recipe_version="r", tokenizer_version="t",
                      partition=0, first_seq=0, end_offset=2, n_docs=2, n_tokens=3, n_bytes=4, sha256="h",
                      token_dtype="uint16", vocab_size=8000, manifest_path="/m")
    d = m.to_dict()
    d["v"] = 99
    with pytest.raises(SchemaError, match="version 99"):
        ShardManifest.from_dict(d)


def test_topics_are_namespaced_but_raw_is_shared():
    live, replay = Topics("live"), Topics("replay-abc")
    assert live.raw == replay.raw
    assert live.tokenized != replay.tokenized
    names = [s.name for s in live.specs()]
    assert len(names) == len(set(names))
    compacted = {s.name for s in live.specs() if s.config.get("cleanup.policy") == "compact"}
    assert live.budgets in compacted and live.dedup_snapshots in compacted


def test_raw_retention_specs():
    from schemas.topics import parse_retention

    assert parse_retention("forever") == (-1, -1)
    assert parse_retention("7d") == (7 * 86_400_000, -1)
    assert parse_retention("12h") == (12 * 3_600_000, -1)
    assert parse_retention("50GB") == (-1, 50 << 30)
    with pytest.raises(ValueError, match="cannot read retention"):
        parse_retention("a while")
    spec = {s.name: s for s in Topics(raw_retention_ms=1000).specs()}["foundry.raw"]
    assert spec.config["retention.ms"] == "1000" and spec.config["retention.bytes"] == "-1"
