"""Common Crawl style WARC / WET files as RawDocuments, streamed and resumable.

Files are read record by record by ``streams.sources.warcfile`` (bounded
memory, resumable positions, damaged gzip members stepped over).

What becomes what:

* ``response`` with an HTML body: main text extracted as the crawler does
  (``extract.page_from_bytes``); ``text/plain`` bodies are taken as they are.
  4xx/5xx responses are documents with ``defect=fetch_failed`` (the crawler
  does the same); 1xx/3xx and other content types are counted, not published.
* ``conversion`` (WET): the text as it is.
* ``resource`` with an http(s) target and an HTML or text body: like a response.
* ``warcinfo``, ``request``, ``metadata`` (WAT), ``revisit``: not documents, counted.
* a corrupt or truncated gzip member, or a record that does not parse: a
  document with ``defect=corrupt_record`` and the offset in ``meta``.

Ids are ``warc:<WARC-Record-ID uuid>`` (stable across runs); a record written
by the foundry crawler carries ``WARC-Foundry-Doc-Id`` and keeps its crawl id.
"""
from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from schemas import RawDocument, Reason

from .extract import HTML_TYPES, TEXT_TYPES, media_type, page_from_bytes
from .files import LocalFileInputs, expand_paths
from .runner import Item
from .warcfile import Corrupt, WarcRecord, iter_records

__all__ = ["Corrupt", "WarcRecord", "WarcSource", "expand_warc_paths", "iter_records"]

WARC_SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz", ".warc.wet.gz", ".warc.wat.gz", ".wat.gz", ".arc.gz")
NON_DOCUMENT_TYPES = {"warcinfo", "request", "metadata", "revisit", "continuation"}
_ISO639_3 = {"eng": "en", "zho": "zh", "deu": "de", "fra": "fr", "spa": "es", "rus": "ru", "jpn": "ja",
             "ita": "it", "por": "pt", "nld": "nl", "pol": "pl", "kor": "ko", "ara": "ar", "tur": "tr"}


def _parse_http(body: bytes, decode: bool = True, max_decoded: int = 16 << 20
                ) -> tuple[int, dict[str, str], bytes] | None:
    head, sep, payload = body.partition(b"\r\n\r\n")
    if not sep:
        head, sep, payload = body.partition(b"\n\n")
        if not sep:
            return None
    lines = head.decode("iso-8859-1").splitlines()
    m = re.match(r"HTTP/\d(?:\.\d)?\s+(\d{3})", lines[0] if lines else "")
    if not m:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if not decode:  # only the status and headers are wanted
        return int(m.group(1)), headers, b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        payload = _dechunk(payload)
    enc = headers.get("content-encoding", "").lower().strip()
    try:
        if enc in ("gzip", "x-gzip", "deflate", "br"):
            payload = _decompressed(payload, enc, max_decoded)
    except _Oversized:
        headers["x-foundry-oversized"] = "1"  # the caller makes it a too_large document
        payload = b""
    except Exception:  # noqa: BLE001 - a stored body whose encoding header lies: keep the bytes
        pass
    return int(m.group(1)), headers, payload


class _Oversized(Exception):
    pass


def _decompressed(payload: bytes, enc: str, limit: int) -> bytes:
    """The body decoded, never more than ``limit`` bytes: a few KiB of gzip can expand
    to gigabytes (a decompression bomb), and the record cap bounds only the stored bytes."""
    if enc == "br":
        import brotli

        d = brotli.Decompressor()
        out = d.process(payload, output_buffer_limit=limit + 1)
        if len(out) > limit or not d.is_finished():
            raise _Oversized
        return out
    wbits = 31 if enc != "deflate" else (-15 if payload[:1] != b"\x78" else 15)
    z = zlib.decompressobj(wbits)
    out = z.decompress(payload, limit + 1)
    if len(out) > limit or z.unconsumed_tail:
        raise _Oversized
    return out


def _dechunk(data: bytes) -> bytes:
    out, pos = bytearray(), 0
    while pos < len(data):
        end = data.find(b"\r\n", pos)
        try:
            n = int(data[pos:end].split(b";")[0].strip(), 16) if end >= 0 else -1
        except ValueError:
            n = -1
        if n < 0:
            return data if pos == 0 else bytes(out)  # pos 0: stored already de-chunked
        if n == 0:
            break
        out += data[end + 2:end + 2 + n]
        pos = end + 2 + n + 2
    return bytes(out)


def _epoch(warc_date: str | None) -> float | None:
    if not warc_date:
        return None
    try:
        return datetime.fromisoformat(warc_date.replace("Z", "+00:00")).timestamp()
    except ValueError:
        try:
            return parsedate_to_datetime(warc_date).timestamp()
        except (TypeError, ValueError):
            return None


class WarcSource(LocalFileInputs):
    """A ResumableSource over WARC/WET files (see the module docstring)."""

    def __init__(self, paths: list[str | Path], *, source: str = "warc", licence: str | None = None,
                 extractor: str = "trafilatura", max_record_bytes: int = 16 << 20):
        self.paths = expand_warc_paths(paths)
        self.name = source
        self.source = source
        self.licence = licence
        self.extractor = extractor
        self.max_record_bytes = max_record_bytes

    def read(self, key: str, position: Any = None) -> Iterator[Item]:
        path = Path(key)
        last = int((position or {}).get("offset", 0))
        for rec, pos in iter_records(path, position, self.max_record_bytes):
            n_bytes = max(0, pos["offset"] - last) if pos["skip"] == 0 else 0
            last = pos["offset"] if pos["skip"] == 0 else last
            if isinstance(rec, Corrupt):
                doc = RawDocument(id=f"warc:{path.name}@{rec.offset}", text="", source=self.source,
                                  licence=self.licence, defect=Reason.CORRUPT_RECORD.value, defect_detail=rec.detail,
                                  meta={"warc_file": path.name, "offset": rec.offset})
                yield Item(doc, pos, n_bytes=n_bytes)
                continue
            doc, kind = self.convert(rec, path.name)
            yield Item(doc, pos, kind=kind, n_bytes=n_bytes)

    def convert(self, rec: WarcRecord, file_name: str) -> tuple[RawDocument | None, str]:
        """A record as a document, or (None, the kind it is counted as)."""
        kind = rec.type or "untyped"
        h = rec.headers
        if kind in NON_DOCUMENT_TYPES:
            return None, kind
        rid = h.get("warc-record-id", "").strip("<>").removeprefix("urn:uuid:")
        doc_id = h.get("warc-foundry-doc-id") or (f"warc:{rid}" if rid else f"warc:{file_name}@{rec.offset}")
        url = h.get("warc-target-uri", "").strip().strip("<>") or None
        if kind in ("response", "resource") and not (url or "").startswith(("http://", "https://")):
            return None, f"{kind}_not_http"
        if url and url.split("?")[0].endswith("/robots.txt"):
            return None, "robots_txt"
        meta: dict[str, Any] = {"warc_file": file_name, "warc_type": kind, "offset": rec.offset}
        if rid:
            meta["warc_record_id"] = rid
        base = dict(id=doc_id, source=h.get("warc-foundry-source") or self.source, url=url,
                    licence=self.licence, fetched_at=_epoch(h.get("warc-date")), meta=meta)
        too_large = rec.length > self.max_record_bytes or h.get("warc-foundry-defect") == Reason.TOO_LARGE.value

        def oversized() -> RawDocument:
            return RawDocument(text="", defect=Reason.TOO_LARGE.value,
                               defect_detail=f"record of {rec.length} bytes (limit {self.max_record_bytes})", **base)

        if kind == "conversion":
            if too_large:
                return oversized(), kind
            langs = h.get("warc-identified-content-language", "")
            first = langs.split(",")[0].strip()
            lang = _ISO639_3.get(first, first[:2] or None) if first else None
            if langs:
                meta["languages"] = langs
            return RawDocument(text=rec.body.decode("utf-8", "replace"), lang=lang, **base), kind
        if kind == "response":
            parsed = _parse_http(rec.body, decode=not too_large, max_decoded=self.max_record_bytes)
            if parsed is None:
                return RawDocument(text="", defect=Reason.CORRUPT_RECORD.value,
                                   defect_detail="response record without a parsable HTTP message", **base), kind
            status, headers, payload = parsed
        elif kind == "resource":
            status, headers, payload = 200, {"content-type": h.get("content-type", "")}, rec.body
        else:
            return None, kind
        meta["http_status"] = status
        ctype = headers.get("content-type", "")
        meta["content_type"] = media_type(ctype)
        if 300 <= status < 400 or status < 200:
            return None, f"http_{status // 100}xx"
        if status >= 400:
            return RawDocument(text="", defect=Reason.FETCH_FAILED.value, defect_detail=f"HTTP {status}",
                               **base), kind
        if media_type(ctype) not in HTML_TYPES + TEXT_TYPES:
            return None, "not_text"
        if too_large:  # the headers were within the cap, the body is not whole
            return oversized(), kind
        if headers.get("x-foundry-oversized"):
            return RawDocument(text="", defect=Reason.TOO_LARGE.value,
                               defect_detail=f"{headers.get('content-encoding')} body decodes to more than "
                                             f"{self.max_record_bytes} bytes", **base), kind
        page = page_from_bytes(payload, ctype, extractor=self.extractor,
                               content_language=headers.get("content-language"))
        meta.update(charset=page.charset, extractor=self.extractor)
        if page.title:
            meta["title"] = page.title
        if "noindex" in page.robots:
            meta["robots"] = "noindex"
        return RawDocument(text=page.text, lang=page.lang, **base), kind


def expand_warc_paths(paths: list[str | Path]) -> list[Path]:
    return expand_paths(paths, WARC_SUFFIXES, kind="WARC")
