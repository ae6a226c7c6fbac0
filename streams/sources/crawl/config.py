"""The crawler's configuration and its end-of-run summary."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..urls import Scope
from .fetch import FetchConfig


@dataclass
class CrawlConfig:
    fetch: FetchConfig = field(default_factory=FetchConfig)
    scope: Scope = field(default_factory=Scope)
    delay_s: float = 1.0  # between two requests to one host
    max_crawl_delay_s: float = 30.0  # a robots.txt Crawl-delay above this is capped
    host_concurrency: int = 1
    concurrency: int = 16
    max_pages: int | None = None  # stop after this many documents (defects included)
    idle_exit_s: float | None = None  # stop once the frontier has been empty this long
    max_seconds: float | None = None
    extractor: str = "trafilatura"
    source: str = "crawl"
    licence: str | None = None
    warc_dir: str | None = None
    max_buffered: int = 5000  # frontier entries held in memory; more pauses consumption
    checkpoint_s: float = 2.0
    max_links_per_page: int = 500


@dataclass
class CrawlSummary:
    requests: int = 0
    robots_fetches: int = 0
    published: int = 0
    defects: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    links_found: int = 0
    links_queued: int = 0
    bytes: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    warc_files: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        rate = self.published / self.seconds if self.seconds else 0.0
        cpu = 1000 * self.cpu_s / max(self.published, 1)
        out = [f"crawl: {self.published} pages published in {self.seconds:.1f}s ({rate:.1f} pages/s, "
               f"{cpu:.1f} ms CPU per page), {self.requests} HTTP requests "
               f"(+{self.robots_fetches} robots.txt), {self.bytes / 1e6:.2f} MB"]
        if self.defects:
            out.append("  with defects (to the rejection ledger): "
                       + ", ".join(f"{k} {v}" for k, v in sorted(self.defects.items())))
        if self.skipped:
            out.append("  not published (counted): " + ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())))
        out.append(f"  links: {self.links_found} found, {self.links_queued} queued")
        if self.warc_files:
            out.append(f"  WARC: {', '.join(self.warc_files)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["defects"], d["skipped"] = dict(self.defects), dict(self.skipped)
        return d
