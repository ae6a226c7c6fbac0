"""WARC/WET reading on the real files of shared/data, and on damaged copies of them."""
from __future__ import annotations

import gzip
import zlib
from collections import Counter

import pytest

from streams.sources.warc import Corrupt, WarcSource, iter_records

CC = "cc-main-2020-34-excerpt.resiliparse.warc.gz"


def _read_all(src: WarcSource):
    items = [it for key in src.inputs() for it in src.read(key, None)]
    docs = [it.doc for it in items if it.doc is not None]
    kinds = Counter(it.kind for it in items if it.doc is None)
    return items, docs, kinds


def _members(data: bytes) -> list[int]:
    offs, pos = [], 0
    while pos < len(data):
        d = zlib.decompressobj(31)
        d.decompress(data[pos:])
        offs.append(pos)
        pos = len(data) - len(d.unused_data)
    return offs


def test_real_warc_files(shared_data):
    src = WarcSource([shared_data / "warc"], source="cc", licence="cc-tou", extractor="resiliparse")
    items, docs, kinds = _read_all(src)
    assert len(src.paths) == 14
    # Non-documents are counted, never published.
    assert kinds["request"] == 488 and kinds["revisit"] == 133 and kinds["warcinfo"] == 15
    assert kinds["metadata"] == 27  # WAT metadata and crawl metadata
    ids = [d.id for d in docs]
    assert len(ids) == len(set(ids)) == 80
    assert all(d.source == "cc" and d.licence == "cc-tou" and d.defect is None for d in docs)
    by_file = Counter(d.meta["warc_file"] for d in docs)
    assert by_file[CC] == 16 and by_file["pywb-iana.warc.gz"] == 16 and by_file["whirlwind.warc.wet.gz"] == 1
    wet = next(d for d in docs if d.meta["warc_file"] == "whirlwind.warc.wet.gz")
    assert wet.meta["warc_type"] == "conversion" and "Escopete" in wet.text and wet.url.startswith("https://an.")
    html = next(d for d in docs if d.meta["warc_file"] == "whirlwind.warc.gz")
    assert "Escopete" in html.text and html.meta["http_status"] == 200 and html.meta["title"]
    assert html.fetched_at and html.fetched_at > 1.7e9  # 2024 crawl
    # Chinese pages of the CC excerpt come out as text (charset detection).
    assert sum(1 for d in docs if d.meta["warc_file"] == CC and any("\u4e00" <= c <= "\u9fff" for c in d.text)) >= 5
    # wget's chunked transfer encoding is undone (pywb-iana stores it chunked).
    assert all(len(d.text) > 100 for d in docs if d.meta["warc_file"] == "pywb-iana.warc.gz")
    # Ids are stable across runs.
    assert [d.id for d in _read_all(src)[1]] == ids


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "header"])
def test_damaged_gzip_members_cost_one_rejection(shared_data, tmp_path, damage):
    data = (shared_data / "warc" / CC).read_bytes()
    offs = _members(data)
    if damage == "flip":  # bytes inside one member's deflate stream
        b = bytearray(data)
        for i in range(offs[10] + 200, offs[10] + 260):
            b[i] ^= 0x55
        data = bytes(b)
    elif damage == "truncate":  # the file ends inside a member
        data = data[: offs[30] + 40]
    elif damage == "garbage":  # junk between two members
        data = data[: offs[5]] + b"\x1f\x8b\x08junk" * 50 + data[offs[5]:]
    else:  # a broken gzip header
        data = data[: offs[7]] + b"\x00\x00" + data[offs[7] + 2:]
    path = tmp_path / f"{damage}.warc.gz"
    path.write_bytes(data)
    items, docs, kinds = _read_all(WarcSource([path], extractor="resiliparse"))
    bad = [d for d in docs if d.defect]
    assert len(bad) == 1 and bad[0].defect == "corrupt_record" and bad[0].text == ""
    assert bad[0].id.startswith(f"warc:{path.name}@")
    total = sum(kinds.values()) + len(docs)
    if damage == "truncate":
        assert total == 31  # 30 whole members, then the rejection
    elif damage == "garbage":
        assert total == 51  # junk between members loses no record: all 50, and one rejection for the junk
    else:
        assert total == 50  # 49 good records + 1 rejection: the rest of the file is kept


@pytest.mark.parametrize("layout", ["members", "plain", "whole-gzip"])
def test_resume_from_any_position(shared_data, tmp_path, layout):
    data = (shared_data / "warc" / CC).read_bytes()
    if layout == "members":
        path = tmp_path / "a.warc.gz"
        path.write_bytes(data)
    else:
        plain = b"".join(zlib.decompressobj(31).decompress(data[o:]) for o in _members(data))
        path = tmp_path / ("a.warc" if layout == "plain" else "a.warc.gz")
        path.write_bytes(plain if layout == "plain" else gzip.compress(plain))
    full = [(r.headers.get("warc-record-id") if not isinstance(r, Corrupt) else "bad", pos)
            for r, pos in iter_records(path)]
    assert len(full) == 50
    for i in (0, 1, 17, 48):
        rest = [r.headers.get("warc-record-id") for r, _ in iter_records(path, full[i][1])]
        assert rest == [rid for rid, _ in full[i + 1:]]
    if layout == "members":
        assert all(pos["skip"] == 0 for _, pos in full)  # every record is a seek point


def test_oversized_record_and_memory_cap(shared_data, tmp_path):
    src = WarcSource([shared_data / "warc" / "pywb-iana.warc.gz"], extractor="resiliparse", max_record_bytes=20_000)
    _, docs, _ = _read_all(src)
    big = [d for d in docs if d.defect == "too_large"]
    assert big and all(d.text == "" for d in big)
    assert len(docs) == 16  # the same records, some now rejected as too large
