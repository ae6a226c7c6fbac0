"""One HTTP exchange at a time, politely bounded: timeouts, retries with
backoff on 5xx/429/timeouts, a maximum body size and content-type filtering.

Redirects are *not* followed here (``allow_redirects=False``): the crawler
follows them itself, so that every hop passes the scope check, robots.txt and
the per-host delay. robots.txt itself is fetched with ``get_robots``.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from ..extract import HTML_TYPES, TEXT_TYPES, media_type

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass
class FetchConfig:
    user_agent: str = "FoundryBot/0.1 (token-foundry crawler)"
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 20.0  # a page that sends nothing for this long is a timeout
    total_timeout_s: float = 60.0
    max_body_bytes: int = 5 << 20
    max_redirects: int = 5
    retries: int = 2  # extra attempts after the first, on 5xx/429/timeouts/connection errors
    backoff_s: float = 1.0  # first retry waits this long, then doubles (with jitter)
    max_backoff_s: float = 30.0  # also the cap on a server's Retry-After
    accept_types: tuple[str, ...] = HTML_TYPES + TEXT_TYPES
    robots_max_bytes: int = 512 * 1024


@dataclass
class Exchange:
    """One request and its response (or the error that ended it)."""

    url: str
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None  # None when not read (redirect, unwanted type, too large, error)
    outcome: str = "ok"  # ok | redirect | http_error | content_type | too_large | timeout | error
    detail: str = ""
    attempts: int = 1
    started_at: float = 0.0  # wall-clock time of the (last) request
    elapsed_s: float = 0.0

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    @property
    def content_type(self) -> str:
        return self.header("content-type") or ""


def make_session(cfg: FetchConfig, concurrency: int, host_concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=max(1, host_concurrency),
                                     ttl_dns_cache=300, enable_cleanup_closed=True)
    timeout = aiohttp.ClientTimeout(total=cfg.total_timeout_s, sock_connect=cfg.connect_timeout_s,
                                    sock_read=cfg.read_timeout_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=True,
                                 headers={"User-Agent": cfg.user_agent,
                                          "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1"},
                                 max_line_size=16384, max_field_size=16384)


def _retry_after(value: str | None, cap: float) -> float | None:
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), cap)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class Fetcher:
    """``turn`` is awaited before every request (retries included): the crawler's
    per-host politeness gate."""

    def __init__(self, session: aiohttp.ClientSession, cfg: FetchConfig, *, rng: random.Random | None = None):
        self.session = session
        self.cfg = cfg
        self.rng = rng or random.Random()
        self.requests = 0
        self.bytes = 0
        self.history: deque[tuple[float, str]] = deque(maxlen=100_000)  # (monotonic time, URL) of each request

    async def get(self, url: str, turn: Callable[[], Awaitable[None]], *, max_bytes: int | None = None,
                  accept: tuple[str, ...] | None = None, allow_redirects: bool = False) -> Exchange:
        """GET with retries on 429/5xx/timeouts/connection errors."""
        attempt = 0
        while True:
            await turn()
            ex = await self._once(url, max_bytes or self.cfg.max_body_bytes,
                                  self.cfg.accept_types if accept is None else accept, allow_redirects)
            ex.attempts = attempt + 1
            retryable = ex.outcome in ("timeout", "error") or (ex.status in RETRY_STATUSES)
            if not retryable or attempt >= self.cfg.retries:
                return ex
            wait = _retry_after(ex.header("retry-after"), self.cfg.max_backoff_s) if ex.status == 429 else None
            if wait is None:
                wait = min(self.cfg.backoff_s * (2 ** attempt), self.cfg.max_backoff_s)
                wait *= 0.75 + 0.5 * self.rng.random()
            await asyncio.sleep(wait)
            attempt += 1

    async def _once(self, url: str, max_bytes: int, accept: tuple[str, ...], allow_redirects: bool) -> Exchange:
        ex = Exchange(url=url, started_at=time.time())
        t0 = time.monotonic()
        self.requests += 1
        self.history.append((time.monotonic(), url))
        try:
            async with self.session.get(url, allow_redirects=allow_redirects, max_redirects=self.cfg.max_redirects
                                        ) as resp:
                ex.status, ex.reason = resp.status, resp.reason or ""
                ex.headers = [(k, v) for k, v in resp.headers.items()]
                if allow_redirects:
                    ex.url = str(resp.url)
                if 300 <= resp.status < 400 and resp.headers.get("Location"):
                    ex.outcome = "redirect"
                    return ex
                if resp.status >= 400:
                    ex.outcome = "http_error"
                    ex.detail = f"HTTP {resp.status}"
                    return ex
                mtype = media_type(resp.headers.get("Content-Type"))
                if accept and mtype and mtype not in accept:
                    ex.outcome, ex.detail = "content_type", f"content type {mtype} is not crawled"
                    return ex
                declared = resp.content_length
                if declared is not None and declared > max_bytes:
                    ex.outcome, ex.detail = "too_large", f"Content-Length {declared} > {max_bytes}"
                    return ex
                buf = bytearray()
                async for chunk in resp.content.iter_chunked(65536):
                    buf += chunk
                    if len(buf) > max_bytes:
                        ex.outcome, ex.detail = "too_large", f"body over {max_bytes} bytes"
                        self.bytes += len(buf)
                        return ex
                ex.body = bytes(buf)
                self.bytes += len(buf)
                return ex
        except asyncio.TimeoutError:
            ex.outcome, ex.detail = "timeout", "timed out"
        except aiohttp.TooManyRedirects:
            ex.outcome, ex.detail = "error", "too many redirects"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            ex.outcome, ex.detail = "error", f"{type(exc).__name__}: {exc}"[:300]
        finally:
            ex.elapsed_s = time.monotonic() - t0
        return ex
