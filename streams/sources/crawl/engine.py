"""The crawler: frontier leases in, RawDocuments out, politely.

Per host (``host[:port]``): one queue, at most ``host_concurrency`` requests
at a time, and successive requests (robots.txt, retries and redirect hops
included) spaced by ``max(delay_s, robots Crawl-delay)``. Every URL taken
from the frontier ends in exactly one of: a published document, a published
document with ``defect`` (fetch_failed, too_large: it goes to the ledger), or
a counted skip (robots, content_type, redirect, noindex, duplicate_url,
out_of_scope, too_deep), and each decided URL is recorded in the seen filter.
"""
from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from schemas import RawDocument, Reason

from ..extract import links_of, page_from_bytes
from ..urls import canonical_url, host_of, site_of, url_doc_id, url_key
from .config import CrawlConfig, CrawlSummary
from .fetch import Exchange, Fetcher, make_session
from .frontier import FrontierEntry, Lease, SeenEntry
from .robots import RobotsCache, RobotsPolicy
from .warcout import CrawlWarcWriter


class _Revoked(Exception):
    """The URL's partition moved to another crawler process: stop before the next request."""


class _Host:
    __slots__ = ("queue", "active", "next_at", "delay")

    def __init__(self, delay: float):
        self.queue: deque[Lease] = deque()
        self.active = 0
        self.next_at = 0.0
        self.delay = delay


class Crawler:
    """``frontier``: a MemoryFrontier or KafkaFrontier. ``publish(doc)`` and ``flush()``:
    the raw-topic producer path (a RecordPublisher's methods)."""

    def __init__(self, cfg: CrawlConfig, frontier: Any, publish: Callable[[RawDocument], Any],
                 flush: Callable[[], Any], *, log: Callable[[str], None] | None = None, progress: bool = False):
        self.cfg, self.frontier, self._publish, self._flush = cfg, frontier, publish, flush
        self.log = log or (lambda m: print(m, file=sys.stderr))
        self.progress = progress
        self.summary = CrawlSummary()
        self.robots = RobotsCache(cfg.fetch.user_agent)
        self.hosts: dict[str, _Host] = {}
        self._waiting: set[str] = set()
        self._queued: set[bytes] = set()
        self._enqueued: dict[bytes, None] = {}  # recently sent to the frontier (bounded)
        self._tasks: set[asyncio.Task] = set()
        self._hops: dict[int, set[str]] = {}  # redirect hops of the URLs in flight
        self._buffered = 0
        self._stop = False
        self._paused = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="extract")
        self.warc = CrawlWarcWriter(cfg.warc_dir) if cfg.warc_dir else None
        self.fetcher: Fetcher | None = None
        if hasattr(frontier, "on_revoke_hook"):
            frontier.on_revoke_hook = self._on_revoke

    # -- seeds and links
    def add_seeds(self, urls: list[str]) -> list[str]:
        entries = []
        for u in urls:
            c = canonical_url(u)
            if c is None:
                self.log(f"not a crawlable URL, ignored: {u}")
                continue
            entries.append(FrontierEntry(url=c, depth=0, site=site_of(c), discovered_at=time.time()))
        self.frontier.add(entries)
        return [e.url for e in entries]

    def _discover(self, html: str, base: str, entry: FrontierEntry) -> None:
        if not self.cfg.scope.follows(entry.depth + 1):
            return
        out, local = [], set()
        for href in links_of(html, base)[: self.cfg.max_links_per_page]:
            url = canonical_url(href)
            if url is None or url in local:
                continue
            local.add(url)
            self.summary.links_found += 1
            if not self.cfg.scope.allows(url, entry.site):
                self.summary.skipped["link_out_of_scope"] += 1
                continue
            k = url_key(url)
            if k in self._enqueued:
                continue
            self._enqueued[k] = None
            if len(self._enqueued) > 1_000_000:
                self._enqueued.pop(next(iter(self._enqueued)))
            out.append(FrontierEntry(url=url, depth=entry.depth + 1, site=entry.site, parent=entry.url,
                                     discovered_at=time.time()))
        self.summary.links_queued += len(out)
        self.frontier.add(out)

    # -- intake and scheduling
    def _accept(self, lease: Lease) -> None:
        e = lease.entry
        url = canonical_url(e.url)
        reason = None
        if url is None:
            reason = "invalid_url"
        elif not self.cfg.scope.follows(e.depth):
            reason = "too_deep"
        elif not self.cfg.scope.allows(url, e.site):
            reason = "out_of_scope"
        elif url_key(url) in self._queued or self.frontier.is_seen(lease, url):
            reason = "duplicate_url"
        if reason is not None:
            self.summary.skipped[reason] += 1
            self.frontier.done(lease)
            return
        e.url = url
        self._queued.add(url_key(url))
        h = host_of(url)
        hs = self.hosts.get(h)
        if hs is None:
            hs = self.hosts[h] = _Host(self.cfg.delay_s)
        # A host that just moved here from another process: its last request there may have
        # started right before the move, so wait one delay from the moment we got it.
        hs.next_at = max(hs.next_at, self.frontier.assigned_at(lease) + hs.delay)
        hs.queue.append(lease)
        self._waiting.add(h)
        self._buffered += 1

    def _on_revoke(self, partitions: list[int]) -> None:
        """Partitions leave this process: make finished work durable, forget their queued entries
        (the new owner reads them again from the committed offset)."""
        self._checkpoint()
        gone = set(partitions)
        for h in list(self._waiting):
            hs = self.hosts[h]
            keep: deque[Lease] = deque()
            for lease in hs.queue:
                if lease.partition in gone:
                    self._queued.discard(url_key(lease.entry.url))
                    self._buffered -= 1
                else:
                    keep.append(lease)
            hs.queue = keep
            if not keep:
                self._waiting.discard(h)

    def _launch(self) -> float:
        """Start what may start now; returns seconds until a host becomes ready."""
        now = time.monotonic()
        wake = 0.25
        for h in list(self._waiting):
            if self._stop or len(self._tasks) >= self.cfg.concurrency:
                break
            hs = self.hosts[h]
            if hs.active >= self.cfg.host_concurrency:
                continue
            if hs.next_at > now:
                wake = min(wake, hs.next_at - now)
                continue
            lease = hs.queue.popleft()
            if not hs.queue:
                self._waiting.discard(h)
            hs.active += 1
            task = asyncio.create_task(self._run_one(lease, hs))
            self._tasks.add(task)
        return max(wake, 0.005)

    async def _turn(self, hs: _Host, lease: Lease) -> None:
        """Wait for this host's next request slot (politeness), and take it."""
        while True:
            if not self.frontier.owns(lease):
                raise _Revoked()
            now = time.monotonic()
            if hs.next_at <= now:
                hs.next_at = now + hs.delay  # from the real start, so lateness never shortens the gap
                return
            await asyncio.sleep(hs.next_at - now)

    async def _policy(self, url: str, hs: _Host, lease: Lease) -> RobotsPolicy:
        before = self.robots.fetches
        site = lease.entry.site
        pol = await self.robots.policy(url, self.fetcher, lambda: self._turn(hs, lease),
                                       in_scope=lambda u: self.cfg.scope.allows(u, site))
        self.summary.robots_fetches += self.robots.fetches - before
        if pol.crawl_delay is not None:
            hs.delay = max(self.cfg.delay_s, min(pol.crawl_delay, self.cfg.max_crawl_delay_s))
        return pol

    # -- one URL
    async def _run_one(self, lease: Lease, hs: _Host) -> None:
        url = lease.entry.url
        try:
            await self._crawl(lease, hs)
        except asyncio.CancelledError:
            raise
        except _Revoked:
            self.summary.skipped["handed_over"] += 1  # its new owner crawls it
        except Exception as exc:  # noqa: BLE001 - a bug or an odd page must not lose the URL
            self._defect(lease, url, Reason.FETCH_FAILED, f"crawler error: {type(exc).__name__}: {exc}"[:500])
        finally:
            self._hops.pop(id(lease), None)
            hs.active -= 1
            self._queued.discard(url_key(url))
            self._buffered -= 1
            self.frontier.done(lease)

    async def _crawl(self, lease: Lease, hs: _Host) -> None:
        e = lease.entry
        url, current, hops = e.url, e.url, {e.url}
        self._hops[id(lease)] = hops
        pol = await self._policy(url, hs, lease)
        if not pol.allowed(url):
            return self._skip(lease, url, "robots")
        for _ in range(self.cfg.fetch.max_redirects + 1):
            ex = await self.fetcher.get(current, lambda: self._turn(hs, lease))
            self.summary.requests += ex.attempts
            if ex.outcome != "redirect":
                break
            if self.warc:
                self.warc.write(ex)
            nxt = canonical_url(ex.header("location") or "", base=current)
            if nxt is None:
                return self._defect(lease, url, Reason.FETCH_FAILED, "redirect to a URL that is not http(s)", ex)
            if nxt in hops:
                return self._defect(lease, url, Reason.FETCH_FAILED, f"redirect loop at {nxt}", ex)
            if not self.cfg.scope.allows(nxt, e.site):
                return self._skip(lease, url, "redirect_out_of_scope", ex.status)
            if url_key(nxt) in self._queued or self.frontier.is_seen(lease, nxt):
                return self._skip(lease, url, "redirect", ex.status)  # the target is crawled on its own
            if host_of(nxt) != host_of(url):  # another host: its owner crawls it, politely
                self.frontier.add([FrontierEntry(url=nxt, depth=e.depth, site=e.site, parent=url,
                                                 discovered_at=time.time())])
                return self._skip(lease, url, "redirect", ex.status)
            if not (await self._policy(nxt, hs, lease)).allowed(nxt):
                return self._skip(lease, url, "robots")
            hops.add(nxt)
            current = nxt
        else:
            return self._defect(lease, url, Reason.FETCH_FAILED,
                                f"more than {self.cfg.fetch.max_redirects} redirects", ex)
        if ex.outcome == "content_type":
            if self.warc:
                self.warc.write(ex)
            return self._skip(lease, url, "content_type", ex.status)
        if ex.outcome == "too_large":
            return self._defect(lease, url, Reason.TOO_LARGE, ex.detail, ex, current)
        if ex.outcome != "ok":
            return self._defect(lease, url, Reason.FETCH_FAILED, ex.detail or ex.outcome, ex, current)
        self.summary.bytes += len(ex.body or b"")
        page = await asyncio.get_running_loop().run_in_executor(
            self._pool, lambda: page_from_bytes(ex.body or b"", ex.content_type, extractor=self.cfg.extractor,
                                                content_language=ex.header("content-language"), keep_html=True))
        if page.html is not None and "nofollow" not in page.robots:
            self._discover(page.html, current, e)
        if "noindex" in page.robots:
            if self.warc:
                self.warc.write(ex)
            return self._skip(lease, url, "noindex", ex.status)
        doc = self._doc(url, ex, current, e, text=page.text, lang=page.lang,
                        meta={"title": page.title, "charset": page.charset, "extractor": self.cfg.extractor})
        if self.warc:
            self.warc.write(ex, doc_id=doc.id, source=doc.source)
        self._emit(lease, doc, "published", ex.status)

    def _doc(self, url: str, ex: Exchange | None, final: str, e: FrontierEntry, *, text: str = "",
             lang: str | None = None, meta: dict | None = None, **kw: Any) -> RawDocument:
        m: dict[str, Any] = {"http_status": ex.status if ex else None, "final_url": final, "depth": e.depth,
                             "content_type": (ex.content_type.split(";")[0].strip() if ex else None) or None,
                             "attempts": ex.attempts if ex else 0}
        if e.parent:
            m["parent"] = e.parent
        m.update({k: v for k, v in (meta or {}).items() if v is not None})
        doc_id = url_doc_id(final if kw.get("defect") is None else url)  # a page's id is that of its final URL
        return RawDocument(id=doc_id, text=text, source=self.cfg.source, url=final, lang=lang,
                           licence=self.cfg.licence, fetched_at=(ex.started_at if ex else time.time()),
                           meta=m, **kw)

    def _emit(self, lease: Lease, doc: RawDocument, outcome: str, status: int | None) -> None:
        self._publish(doc)
        self.summary.published += 1
        if doc.defect:
            self.summary.defects[doc.defect] += 1
        self._mark(lease, outcome, status, doc.id)
        if self.cfg.max_pages is not None and self.summary.published >= self.cfg.max_pages:
            self._stop = True

    def _defect(self, lease: Lease, url: str, reason: Reason, detail: str, ex: Exchange | None = None,
                final: str | None = None) -> None:
        if self.warc and ex is not None and ex.outcome != "redirect":
            self.warc.write(ex, doc_id=url_doc_id(url), source=self.cfg.source)
        doc = self._doc(url, ex, final or url, lease.entry, defect=reason.value, defect_detail=detail)
        self._emit(lease, doc, f"defect:{reason.value}", ex.status if ex else None)

    def _skip(self, lease: Lease, url: str, kind: str, status: int | None = None) -> None:
        self.summary.skipped[kind] += 1
        self._mark(lease, kind, status)

    def _mark(self, lease: Lease, outcome: str, status: int | None, doc_id: str | None = None) -> None:
        """Record the URL's outcome in the seen filter, and the same-host redirect hops taken on its way."""
        now = time.time()
        url = lease.entry.url
        self.frontier.mark_seen(lease, SeenEntry(url=url, outcome=outcome, doc_id=doc_id, status=status, at=now))
        for hop in self._hops.get(id(lease), ()):
            if hop != url:
                self.frontier.mark_seen(lease, SeenEntry(url=hop, outcome=f"via:{outcome}", doc_id=doc_id,
                                                         status=status, at=now))

    # -- the loop
    def _checkpoint(self) -> None:
        self.frontier.checkpoint(self._flush)

    def stop(self) -> None:
        self._stop = True

    async def run(self) -> CrawlSummary:
        t0, cpu0 = time.monotonic(), time.process_time()
        last_cp = idle_since = time.monotonic()
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(unit="page", desc="crawl", file=sys.stderr, mininterval=0.5, dynamic_ncols=True)
        session = make_session(self.cfg.fetch, self.cfg.concurrency, self.cfg.host_concurrency)
        self.fetcher = Fetcher(session, self.cfg.fetch)
        try:
            while not self._stop:
                room = self.cfg.max_buffered - self._buffered
                if room > 0:
                    for lease in self.frontier.poll(min(room, 500)):
                        self._accept(lease)
                if (room <= 0) != self._paused:
                    self._paused = room <= 0
                    self.frontier.set_paused(self._paused)
                wake = self._launch()
                if self._tasks:
                    done, _ = await asyncio.wait(self._tasks, timeout=wake, return_when=asyncio.FIRST_COMPLETED)
                    self._tasks -= done
                    idle_since = time.monotonic()
                else:
                    await asyncio.sleep(min(wake, 0.05))
                    if self._buffered:
                        idle_since = time.monotonic()
                now = time.monotonic()
                if now - last_cp >= self.cfg.checkpoint_s:
                    if bar is not None:
                        bar.n = self.summary.published
                        bar.refresh()
                    self._checkpoint()
                    last_cp = now
                if self.cfg.max_seconds is not None and now - t0 >= self.cfg.max_seconds:
                    break
                if (self.cfg.idle_exit_s is not None and not self._tasks and not self._buffered
                        and now - idle_since >= self.cfg.idle_exit_s):
                    self._checkpoint()  # links found last are flushed before we decide the frontier is empty
                    if self.frontier.drained(force=True):
                        break
                    idle_since = now
            if self._tasks:  # finish what is in flight (bounded), then make it durable
                done, pending = await asyncio.wait(self._tasks, timeout=self.cfg.fetch.total_timeout_s + 5)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                self._tasks.clear()
            self._checkpoint()
        finally:
            await session.close()
            self._pool.shutdown(wait=True)
            if self.warc:
                self.warc.close()
                self.summary.warc_files = [str(p) for p in self.warc.paths]
            if bar is not None:
                bar.n = self.summary.published
                bar.close()
            self.summary.seconds = time.monotonic() - t0
            self.summary.cpu_s = time.process_time() - cpu0
        return self.summary
