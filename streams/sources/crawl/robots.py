"""robots.txt, fetched once per origin and cached, read for our user agent.

Status handling follows RFC 9309: 2xx is parsed; 4xx (other than 429) means
no rules, so everything is allowed; 5xx, 429 and network errors mean the
site is unreachable, so everything is disallowed until the entry expires
(``unreachable_ttl_s``, shorter than a good entry's ``ttl_s``).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from ..urls import canonical_url
from .fetch import Exchange, Fetcher


@dataclass
class RobotsPolicy:
    parser: RobotFileParser | None  # None: allow_all decides
    allow_all: bool
    user_agent: str
    crawl_delay: float | None
    expires_at: float
    status: str  # parsed | missing | unreachable

    def allowed(self, url: str) -> bool:
        if self.parser is None:
            return self.allow_all
        return self.parser.can_fetch(self.user_agent, url)


def _agent_token(user_agent: str) -> str:
    """The product token robots.txt groups match against (``FoundryBot/0.1 (...)`` -> ``FoundryBot``)."""
    return user_agent.split("/")[0].split()[0]


def parse_robots(text: str, user_agent: str, ttl_s: float) -> RobotsPolicy:
    parser = RobotFileParser()
    parser.parse(text.splitlines())
    token = _agent_token(user_agent)
    delay = parser.crawl_delay(token)
    return RobotsPolicy(parser, True, token, float(delay) if delay is not None else None,
                        time.monotonic() + ttl_s, "parsed")


class RobotsCache:
    def __init__(self, user_agent: str, *, ttl_s: float = 3600.0, unreachable_ttl_s: float = 300.0):
        self.user_agent = user_agent
        self.ttl_s = ttl_s
        self.unreachable_ttl_s = unreachable_ttl_s
        self._cache: dict[str, RobotsPolicy] = {}
        self._pending: dict[str, asyncio.Future] = {}
        self.fetches = 0

    @staticmethod
    def origin(url: str) -> str:
        p = urlsplit(url)
        return f"{p.scheme}://{p.netloc}"

    async def policy(self, url: str, fetcher: Fetcher, turn: Callable[[], Awaitable[None]],
                     in_scope: Callable[[str], bool] = lambda u: True) -> RobotsPolicy:
        """The policy of ``url``'s origin. Redirects of robots.txt are followed (up to
        the fetcher's limit) only to URLs ``in_scope`` accepts: nothing outside the
        crawl's scope is fetched, robots.txt included."""
        origin = self.origin(url)
        cached = self._cache.get(origin)
        if cached is not None and cached.expires_at > time.monotonic():
            return cached
        pending = self._pending.get(origin)
        if pending is not None:  # another task of this host is fetching it
            return await asyncio.shield(pending)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[origin] = fut
        try:
            self.fetches += 1
            target = origin + "/robots.txt"
            for _ in range(fetcher.cfg.max_redirects + 1):
                ex = await fetcher.get(target, turn, max_bytes=fetcher.cfg.robots_max_bytes, accept=())
                if ex.outcome != "redirect":
                    break
                nxt = canonical_url(ex.header("location") or "", base=target)
                if nxt is None or not in_scope(nxt):
                    ex = Exchange(url=target, status=404, outcome="http_error")  # rules we may not fetch: none
                    break
                target = nxt
            else:
                ex = Exchange(url=target, outcome="error", detail="too many redirects")
            pol = self._from_exchange(ex)
            self._cache[origin] = pol
            fut.set_result(pol)
            return pol
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        finally:
            self._pending.pop(origin, None)

    def _from_exchange(self, ex: Exchange) -> RobotsPolicy:
        now = time.monotonic()
        token = _agent_token(self.user_agent)
        if ex.status is not None and 200 <= ex.status < 300 and ex.body is not None:
            return parse_robots(ex.body.decode("utf-8", "replace"), self.user_agent, self.ttl_s)
        if ex.outcome == "too_large" and ex.status is not None and ex.status < 300:
            # RFC 9309: parse at least the first 500 KiB; we did not keep it, so be conservative.
            return RobotsPolicy(None, False, token, None, now + self.unreachable_ttl_s, "unreachable")
        if ex.status is not None and 400 <= ex.status < 500 and ex.status != 429:
            return RobotsPolicy(None, True, token, None, now + self.ttl_s, "missing")
        return RobotsPolicy(None, False, token, None, now + self.unreachable_ttl_s, "unreachable")
