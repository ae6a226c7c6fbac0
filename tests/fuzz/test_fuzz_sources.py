"""The file and WARC sources over hostile files: nothing raises, every input line or record
ends as a document (a defect one when it cannot be read) that survives the wire, and the
memory a bounded input takes stays under a stated bound (tracemalloc peak)."""
from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import RawDocument, Reason
from streams.sources.files import MAX_LINE_BYTES, FileSource
from streams.sources.warc import WarcSource
from streams.stages.validate import Validator
from tests.fuzz.hostile import deep_json, gzip_bomb, hostile_record, html_bomb, hostile_text

REASONS = {r.value for r in Reason}
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])


def _through_the_wire(doc: RawDocument) -> RawDocument:
    """What the raw topic carries: it must encode (valid UTF-8) and decode to the same document."""
    back = RawDocument.decode(doc.encode())
    assert back == doc
    assert doc.defect is None or doc.defect in REASONS
    out = Validator("r")(back)
    assert getattr(out, "reason", None) is None or out.reason in REASONS
    return back


def _docs(path: Path, **kw) -> list[RawDocument]:
    src = FileSource([path], **kw) if not path.name.endswith((".warc", ".warc.gz")) else WarcSource([path], **kw)
    return [item.doc for item in src.read(str(path)) if item.doc is not None]


@FUZZ
@given(lines=st.lists(hostile_record(), min_size=1, max_size=12), gz=st.booleans())
def test_every_hostile_jsonl_line_is_one_document(tmp_path_factory, lines, gz):
    path = tmp_path_factory.mktemp("fz") / ("c.jsonl.gz" if gz else "c.jsonl")
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if gz else data)
    docs = _docs(path)
    assert len(docs) == sum(1 for line in lines if line.strip())
    for d in docs:
        _through_the_wire(d)


def test_deep_json_lone_surrogates_and_mixed_encodings_are_ledgered(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\n".join([
        deep_json(),
        b'{"id": "sur", "text": "half a pair \\ud800 here"}',
        b'{"id": "sur-id-\\udfff", "text": "a fine text", "url": "http://x/\\ud800"}',
        b'{"id": "latin1", "text": "caf\xe9"}',
        b'{"id": "../../../etc/passwd", "text": "an id shaped like a path"}',
    ]) + b"\n")
    docs = {d.id: d for d in map(_through_the_wire, _docs(path))}
    assert docs["c.jsonl:1"].defect == "malformed"
    assert docs["sur"].defect == "invalid_utf8"
    kept = docs["sur-id-\\udfff"]  # the id is escaped; the url that cannot be carried is dropped
    assert kept.defect is None and kept.url is None
    assert docs["c.jsonl:4"].defect == "invalid_utf8"  # an undecodable line is known by its place
    assert docs["../../../etc/passwd"].defect is None  # an id is data: it names no file


def test_a_line_over_the_message_limit_is_too_large_within_a_memory_bound(tmp_path):
    path = tmp_path / "big.jsonl.gz"
    n = MAX_LINE_BYTES + (8 << 20)
    path.write_bytes(gzip_bomb(n, head=b'{"id": "big", "text": "', fill=b"x") + gzip.compress(b'"}\n{"id": "after", "text": "ok"}\n'))
    tracemalloc.start()
    try:
        docs = _docs(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [d.defect for d in docs] == ["too_large", None]
    # Bound: the line is read up to the limit and no further (one buffer of MAX_LINE_BYTES + 1, plus
    # the reader's copies); the rest is skipped in 1 MiB chunks.
    assert peak < 3 * MAX_LINE_BYTES, peak


# ------------------------------------------------------------------ WARC
def _warc(kind: str, body: bytes, uri: str = "http://example.com/p", extra: str = "") -> bytes:
    head = (f"WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Target-URI: {uri}\r\n"
            f"WARC-Record-ID: <urn:uuid:{abs(hash((kind, body[:64], uri))):032x}>\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode("utf-8", "surrogatepass")  # invalid UTF-8 in a header too
    return head + body + b"\r\n\r\n"


def _http(body: bytes, ctype: str = "text/html", extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n{extra}\r\n".encode() + body


@FUZZ
@given(bodies=st.lists(st.one_of(st.binary(max_size=300), hostile_text.map(lambda t: t.encode("utf-8", "replace"))),
                       min_size=1, max_size=6),
       uri=hostile_text, ctype=st.sampled_from(["text/html", "text/plain; charset=utf-16", "text/html; charset=bogus",
                                                 "application/octet-stream", ""]),
       member_per_record=st.booleans(), cut=st.integers(min_value=0, max_value=50))
def test_hostile_warc_records_never_raise(tmp_path_factory, bodies, uri, ctype, member_per_record, cut):
    recs = [_warc("response", _http(b, ctype), "http://h/" + uri.replace("\r", "").replace("\n", "")) for b in bodies]
    recs.append(_warc("conversion", bodies[0]))
    data = b"".join(gzip.compress(r) for r in recs) if member_per_record else gzip.compress(b"".join(recs))
    path = tmp_path_factory.mktemp("fzw") / "f.warc.gz"
    path.write_bytes(data[:len(data) - cut])  # a cut file ends with a damaged member
    for d in _docs(path):
        _through_the_wire(d)


def test_gzip_bomb_in_a_warc_record_and_in_its_http_body_stay_bounded(tmp_path):
    limit = 1 << 20
    # 1. A gzip member that inflates to 256 MiB of one record: the record cap applies to what is read.
    bomb_record = gzip_bomb(256 << 20, head=b"WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Target-URI: http://b/\r\n"
                            + f"Content-Length: {256 << 20}\r\n\r\n".encode())
    # 2. A small record whose HTTP body says Content-Encoding: gzip and inflates to 512 MiB.
    bomb_body = _warc("response", _http(gzip_bomb(512 << 20), extra="Content-Encoding: gzip\r\n"))
    # 3. An HTML bomb: deeply nested tags, within the cap.
    html = _warc("response", _http(html_bomb(20_000).encode()))
    path = tmp_path / "bombs.warc.gz"
    path.write_bytes(bomb_record + b"".join(gzip.compress(r) for r in (bomb_body, html, _warc(
        "conversion", b"the record after the bombs"))))
    tracemalloc.start()
    try:
        docs = [_through_the_wire(d) for d in _docs(path, max_record_bytes=limit)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [d.defect for d in docs] == ["too_large", "too_large", None, None], [(d.id, d.defect) for d in docs]
    assert docs[-1].text == "the record after the bombs"
    # Bound: a few copies of the record cap plus the extractor's tree of the HTML bomb.
    assert peak < 64 * limit, peak
