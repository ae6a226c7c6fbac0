"""Damaged corpus files: each bad line or stream end becomes a defect document (a ledger row), never an exception."""
from __future__ import annotations

import gzip
import json

from streams.sources import files
from streams.sources.files import FileSource
from streams.stages.validate import Validator


def _reasons(path) -> list[tuple[str, str | None]]:
    v = Validator("rv", max_bytes=1 << 30)
    out = []
    for doc in FileSource([path]):
        res = v(doc)
        out.append((doc.id, getattr(res, "reason", None)))
    return out


def test_deeply_nested_json_line_is_malformed(tmp_path):
    p = tmp_path / "nest.jsonl"
    nested = b'{"id": "deep", "text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    p.write_bytes(b'{"id": "a", "text": "one"}\n' + nested + b'\n{"id": "b", "text": "two"}\n')
    assert _reasons(p) == [("a", None), ("nest.jsonl:2", "malformed"), ("b", None)]


def test_truncated_gzip_ends_the_file_with_a_corrupt_record(tmp_path):
    p = tmp_path / "cut.jsonl.gz"
    whole = gzip.compress(b"".join(json.dumps({"id": f"d{i}", "text": f"t {i}"}).encode() + b"\n"
                                   for i in range(2000)))
    p.write_bytes(whole[: len(whole) // 2])
    got = _reasons(p)
    assert got[-1][1] == "corrupt_record" and got[-1][0] == f"cut.jsonl.gz:{len(got)}"
    assert all(r is None for _, r in got[:-1]) and 0 < len(got) - 1 < 2000
    # A resumed read after the damage yields nothing more (no second defect, no exception).
    items = list(FileSource([p]).read(str(p)))
    assert list(FileSource([p]).read(str(p), items[-1].position)) == []


def test_line_over_the_message_limit_is_too_large_and_never_held_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MAX_LINE_BYTES", 1000)
    p = tmp_path / "big.jsonl"
    p.write_bytes(b'{"id": "a", "text": "one"}\n' + json.dumps({"id": "huge", "text": "x" * 50_000}).encode()
                  + b'\n{"id": "b", "text": "two"}\n')
    docs = list(FileSource([p]))
    assert [d.id for d in docs] == ["a", "big.jsonl:2", "b"]
    assert docs[1].defect == "too_large" and docs[1].text == "" and "50027 bytes" in docs[1].defect_detail
    assert len(docs[1].meta["excerpt"]) <= 200
    assert _reasons(p)[1] == ("big.jsonl:2", "too_large")
