"""WARC files read record by record: gzip members with zlib, resumable positions,
and recovery from damaged members. ``streams.sources.warc`` turns the records
into documents.

Why not a WARC library: memory stays bounded by one record (a record's body is
capped; the rest is skipped unread); a damaged member is stepped over by
scanning for the next gzip header that starts a WARC record, so one bad record
costs one rejection, not the rest of the file; and the compressed offset of
every member boundary is known, which is the resume position (seek, no
re-reading). Plain ``.warc`` files and whole-file gzip work too (positions
there are a seek point plus a count of records to skip).
"""
from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b\x08"
CHUNK = 1 << 16
MAX_HEADER_LINE = 1 << 16


class Corrupt(Exception):
    """A gzip member or record that cannot be read; ``offset`` is where it started."""

    def __init__(self, offset: int, detail: str):
        super().__init__(detail)
        self.offset = offset
        self.detail = detail


class _Member:
    """The decompressed bytes of one gzip member (or of a whole plain file), read lazily."""

    def __init__(self, fh: BinaryIO, offset: int, compressed: bool, max_out: int = 1 << 20):
        self.fh, self.offset, self.compressed, self.max_out = fh, offset, compressed, max_out
        fh.seek(offset)
        self.d = zlib.decompressobj(31) if compressed else None
        self.buf = bytearray()
        self.next_offset: int | None = None  # compressed offset right after this member, once known
        self.ended = False
        self.consumed = 0  # decompressed bytes handed out (plain files: the file offset)

    def _fill(self) -> bool:
        if self.ended:
            return False
        if self.d is None:
            data = self.fh.read(CHUNK)
            if not data:
                self.ended = True
                self.next_offset = self.offset + self.consumed + len(self.buf)
                return False
            self.buf += data
            return True
        src = self.d.unconsumed_tail or self.fh.read(CHUNK)
        if not src:
            raise Corrupt(self.offset, "truncated gzip member (file ends inside it)")
        try:
            out = self.d.decompress(src, self.max_out)
        except zlib.error as exc:
            raise Corrupt(self.offset, f"corrupt gzip member: {exc}") from None
        self.buf += out
        if self.d.eof:
            self.ended = True
            self.next_offset = self.fh.tell() - len(self.d.unused_data)
        return True

    def readline(self) -> bytes:
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                return self._take(i + 1)
            if len(self.buf) > MAX_HEADER_LINE:
                raise Corrupt(self.offset, "header line longer than 64 KiB")
            start = len(self.buf)
            if not self._fill():
                return self._take(len(self.buf))

    def read(self, n: int) -> bytes:
        while len(self.buf) < n and self._fill():
            pass
        return self._take(min(n, len(self.buf)))

    def skip(self, n: int) -> int:
        skipped = 0
        while skipped < n:
            got = len(self.read(min(n - skipped, 1 << 20)))
            if not got:
                break
            skipped += got
        return skipped

    def _take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.consumed += n
        return out

    def at_end(self) -> bool:
        """True when the member has nothing left but the blank lines that close a record."""
        while True:
            while self.buf[:1] in (b"\r", b"\n"):
                self._take(1)
            if self.buf:
                return False
            if not self._fill():
                return True


@dataclass
class WarcRecord:
    headers: dict[str, str]  # lower-case names
    body: bytes  # at most max_record_bytes
    length: int  # declared Content-Length
    offset: int  # compressed offset of the member it came from

    @property
    def type(self) -> str:
        return self.headers.get("warc-type", "").lower()


def _read_record(m: _Member, max_bytes: int) -> WarcRecord | None:
    line = m.readline()
    while line in (b"\r\n", b"\n"):
        line = m.readline()
    if not line:
        return None
    if not line.startswith(b"WARC/"):
        raise Corrupt(m.offset, f"not a WARC record: {line[:40]!r}")
    headers: dict[str, str] = {}
    while True:
        line = m.readline()
        if not line:
            raise Corrupt(m.offset, "record ends inside its headers")
        if line in (b"\r\n", b"\n"):
            break
        name, sep, value = line.decode("utf-8", "replace").partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    try:
        length = int(headers.get("content-length", ""))
    except ValueError:
        raise Corrupt(m.offset, "record without a valid Content-Length") from None
    body = m.read(min(length, max_bytes))
    rest = length - len(body)
    if len(body) < min(length, max_bytes) or (rest and m.skip(rest) < rest):
        raise Corrupt(m.offset, f"record shorter than its Content-Length {length}")
    return WarcRecord(headers, body, length, m.offset)


def _resync(fh: BinaryIO, after: int) -> int | None:
    """Offset of the next gzip member that starts a WARC record, searching from ``after``."""
    pos = after
    while True:
        fh.seek(pos)
        window = fh.read(CHUNK + 2)
        if len(window) < 3:
            return None
        i = window.find(GZIP_MAGIC)
        while i >= 0:
            fh.seek(pos + i)
            d = zlib.decompressobj(31)
            try:
                head = d.decompress(fh.read(4096), 16)
            except zlib.error:
                head = b""
            if head.startswith(b"WARC/"):
                return pos + i
            i = window.find(GZIP_MAGIC, i + 1)
        pos += CHUNK


def iter_records(path: Path, position: dict | None = None, max_record_bytes: int = 16 << 20
                 ) -> Iterator[tuple[WarcRecord | Corrupt, dict]]:
    """(record or Corrupt, position after it). Positions are
    ``{"offset": a seek point (member start, or record start in a plain file),
    "skip": records already done after it}``."""
    compressed = _is_gzip(path)
    offset = int((position or {}).get("offset", 0))
    skip = int((position or {}).get("skip", 0))
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        while offset < size:
            m = _Member(fh, offset, compressed)
            n = 0
            try:
                while True:
                    rec_start = m.consumed
                    rec = _read_record(m, max_record_bytes)
                    if rec is None:
                        break
                    if not compressed:  # every record boundary of a plain file is a seek point
                        rec.offset = offset + rec_start
                        yield rec, {"offset": offset + m.consumed, "skip": 0}
                        continue
                    n += 1
                    if n <= skip:
                        continue
                    try:
                        last = m.at_end()
                    except Corrupt:  # the record is whole; what follows it is damaged
                        last = False
                    if last:
                        yield rec, {"offset": m.next_offset, "skip": 0}
                        break
                    yield rec, {"offset": offset, "skip": n}
            except Corrupt as exc:
                nxt = _resync(fh, offset + 1) if compressed else None
                yield exc, {"offset": nxt if nxt is not None else size, "skip": 0}
                if nxt is None:
                    return
                offset, skip = nxt, 0
                continue
            skip = 0
            if m.next_offset is None or m.next_offset <= offset:
                return
            offset = m.next_offset


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(3) == GZIP_MAGIC
