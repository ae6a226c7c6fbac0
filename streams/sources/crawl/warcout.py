"""What the crawler fetched, written as WARC response records (warcio), so a
crawl can be replayed from files with ``foundry ingest warc`` as well as from
the topic. Bodies are stored decoded (aiohttp removes Content-Encoding), so the
stored HTTP headers drop Content-Encoding/Transfer-Encoding and carry the
real Content-Length. Two extra WARC headers, ``WARC-Foundry-Doc-Id`` and
``WARC-Foundry-Source``, let the WARC reader give a replayed page the id and
source the crawler gave it; ``WARC-Foundry-Defect: too_large`` marks a page
whose body was over the limit and not kept.
"""
from __future__ import annotations

import io
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from .fetch import Exchange

_DROP = {"content-encoding", "transfer-encoding", "content-length"}


class CrawlWarcWriter:
    def __init__(self, folder: str | Path, *, prefix: str = "foundry-crawl", max_bytes: int = 1 << 30):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.prefix, self.max_bytes = prefix, max_bytes
        self._fh = None
        self._writer: WARCWriter | None = None
        self._seq = 0
        self.records = 0
        self.paths: list[Path] = []

    def _open(self) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
        path = self.folder / f"{self.prefix}-{stamp}-{os.getpid()}-{self._seq:05d}.warc.gz"
        self._seq += 1
        self._fh = open(path, "wb")
        self._writer = WARCWriter(self._fh, gzip=True)
        self.paths.append(path)

    def write(self, ex: Exchange, *, doc_id: str | None = None, source: str | None = None) -> None:
        if ex.status is None:
            return  # nothing came back: no response to archive
        if self._fh is None or self._fh.tell() > self.max_bytes:
            self.close()
            self._open()
        body = ex.body or b""
        headers = [(k, v) for k, v in ex.headers if k.lower() not in _DROP]
        headers.append(("Content-Length", str(len(body))))
        http = StatusAndHeaders(f"{ex.status} {ex.reason}".strip(), headers, protocol="HTTP/1.1")
        stamp = datetime.fromtimestamp(ex.started_at or time.time(), timezone.utc)
        warc_headers = {"WARC-Date": stamp.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if doc_id:
            warc_headers["WARC-Foundry-Doc-Id"] = doc_id
        if source:
            warc_headers["WARC-Foundry-Source"] = source
        if ex.outcome == "too_large":
            warc_headers["WARC-Foundry-Defect"] = "too_large"  # the body was not kept
        rec = self._writer.create_warc_record(ex.url, "response", payload=io.BytesIO(body), length=len(body),
                                              http_headers=http, warc_headers_dict=warc_headers)
        self._writer.write_record(rec)
        self._fh.flush()
        self.records += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._writer = None
