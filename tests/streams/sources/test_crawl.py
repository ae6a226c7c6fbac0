"""The crawler against a generated local site (127.0.0.1 only), with an in-memory frontier.
The Kafka frontier (restart, several processes) is tested in test_kafka_sources.py."""
from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from urllib.parse import urlsplit

from streams.sources.crawl.engine import CrawlConfig, Crawler
from streams.sources.crawl.fetch import FetchConfig
from streams.sources.crawl.frontier import MemoryFrontier
from streams.sources.urls import Scope, canonical_url
from streams.sources.warc import WarcSource

from .sitegen import EXPECTED


def crawl_config(**kw) -> CrawlConfig:
    fetch = FetchConfig(read_timeout_s=0.5, total_timeout_s=3.0, retries=2, backoff_s=0.05,
                        max_body_bytes=100_000)
    base = dict(fetch=fetch, scope=Scope(max_depth=3), delay_s=0.05, idle_exit_s=0.3, concurrency=8,
                extractor="resiliparse")
    base.update(kw)
    return CrawlConfig(**base)


def run_crawl(cfg: CrawlConfig, seeds: list[str]):
    docs, frontier = [], MemoryFrontier()
    crawler = Crawler(cfg, frontier, docs.append, lambda: None, log=lambda m: None)
    crawler.add_seeds(seeds)
    summary = asyncio.run(asyncio.wait_for(crawler.run(), 60))
    return crawler, frontier, docs, summary


def test_crawl_generated_site(site_factory, tmp_path):
    site = site_factory(n_pages=12, hang_s=5)
    t0 = time.monotonic()
    crawler, frontier, docs, summary = run_crawl(crawl_config(warc_dir=str(tmp_path / "warc")), [site.url("/")])
    assert time.monotonic() - t0 < 30  # hanging pages are bounded by the timeouts
    base = site.url("")
    by_path = {urlsplit(d.url).path: d for d in docs}
    outcome = {urlsplit(e.url).path: e.outcome for e in frontier.seen.values()}

    # Every special page got the treatment it deserves.
    for path, want in EXPECTED.items():
        if want == "published":
            assert outcome[path] == "published", path
        elif want in ("fetch_failed", "too_large"):
            assert outcome[path] == f"defect:{want}", path
            d = next(d for d in docs if d.url.endswith(path) and d.defect)
            assert d.defect == want and d.text == ""
        else:
            assert outcome[path] == want, path
    for i in range(12):
        assert f"/page/{i}" in by_path and f"page {i} unique marker" in by_path[f"/page/{i}"].text.lower()
    assert "Café crème brûlée" in by_path["/latin1"].text
    assert "国标扩展码" in by_path["/gbk"].text and by_path["/gbk"].meta["charset"] == "gbk"
    assert "シフトJIS" in by_path["/sjis"].text
    assert "broken marker 3" in by_path["/malformed"].text
    p1 = by_path["/page/1"]
    assert p1.meta["title"] == "Page 1" and p1.meta["http_status"] == 200 and p1.lang == "en"
    assert p1.fetched_at and abs(p1.fetched_at - time.time()) < 120 and p1.meta["final_url"] == p1.url
    assert len({d.id for d in docs}) == len(docs)  # one document per page, never two

    # Every request the site saw is accounted for: robots.txt, or a URL the crawler decided.
    decided = {urlsplit(e.url).path for e in frontier.seen.values()}
    for path in site.paths():
        assert path == "/robots.txt" or urlsplit(path).path in decided, path
    # Nothing out of scope, nothing disallowed, nothing past the depth limit was fetched.
    assert all(u.startswith(base) for _, u in crawler.fetcher.history)
    assert site.hits("/private/secret") == site.hits("/nobot/page") == 0
    assert site.hits("/deep/3") == 1 and site.hits("/deep/4") == 0
    assert site.hits("/robots.txt") == 1  # cached per host
    # Retries: 500 three times (1 + 2 retries), the flaky page twice, the 404 once.
    assert site.hits("/status/500") == 3 and site.hits("/flaky") == 2 and site.hits("/status/404") == 1
    assert site.hits("/ratelimit") == 2 and site.hits("/loop/a") == 1 and site.hits("/chain/5") == 1
    assert site.hits("/chain/6") == 0
    assert all(h.agent.startswith("FoundryBot/") for h in site.log)
    # Politeness: requests to the host start at least delay_s apart (robots.txt and retries included);
    # the site sees about the same (arrival times jitter on a loaded machine).
    sent = [t for t, _ in crawler.fetcher.history]
    assert len(sent) == len(site.log) and min(b - a for a, b in zip(sent, sent[1:])) >= 0.05 - 1e-3
    starts = sorted(h.t for h in site.log)
    assert sum(b - a for a, b in zip(starts, starts[1:])) / (len(starts) - 1) >= 0.05
    assert summary.skipped["robots"] == 2 and summary.skipped["link_out_of_scope"] >= 1
    assert summary.published == len(docs) and any("pages published" in line for line in summary.lines())

    # The WARC written during the crawl replays to the same documents (same ids and text).
    replay = WarcSource(summary.warc_files, extractor="resiliparse")
    rdocs = {it.doc.id: it.doc for key in replay.inputs() for it in replay.read(key) if it.doc is not None}
    for d in docs:
        if d.defect is None:
            assert rdocs[d.id].text == d.text and rdocs[d.id].source == "crawl"
    assert {d.id for d in docs if d.defect == "too_large"} <= {i for i, d in rdocs.items() if d.defect == "too_large"}


def test_robots_crawl_delay_and_host_concurrency(site_factory):
    """Two hosts (two ports): each is polite on its own, both progress at the same time."""
    site = site_factory(n_pages=6, ports=2, specials=False)
    cfg = crawl_config(delay_s=0.2, scope=Scope(max_depth=2))
    _, _, docs, _ = run_crawl(cfg, [site.url("/", 0), site.url("/", 1)])
    per_port = defaultdict(list)
    for h in site.log:
        per_port[h.port].append(h.t)
    assert len(per_port) == 2
    for times in per_port.values():
        times.sort()
        assert min(b - a for a, b in zip(times, times[1:])) >= 0.2 * 0.9
    both = sorted(t for ts in per_port.values() for t in ts)
    assert min(b - a for a, b in zip(both, both[1:])) < 0.15  # the hosts were crawled in parallel
    assert len(docs) == 2 * (6 + 2)  # index, about and six pages on each host


def test_max_pages_and_dedup_of_equivalent_urls(site_factory):
    site = site_factory(n_pages=30, specials=False)
    _, _, docs, summary = run_crawl(crawl_config(max_pages=5), [site.url("/"), site.url("/?utm_source=x")])
    assert summary.published == 5 <= len(docs) <= 5 + 8  # in-flight pages finish after the limit
    assert site.hits("/") == 1  # the two seeds are one canonical URL
    assert canonical_url(site.url("/?utm_source=x")) == site.url("/")


def test_robots_rules_for_our_agent_and_status_codes():
    from streams.sources.crawl.fetch import Exchange
    from streams.sources.crawl.robots import RobotsCache, parse_robots

    text = "User-agent: *\nDisallow: /\n\nUser-agent: FoundryBot\nDisallow: /private\nCrawl-delay: 2\n"
    pol = parse_robots(text, "FoundryBot/0.1 (x)", ttl_s=60)
    assert pol.allowed("http://h/ok") and not pol.allowed("http://h/private/x") and pol.crawl_delay == 2.0
    assert not parse_robots(text, "OtherBot/1", ttl_s=60).allowed("http://h/ok")  # the * group applies to others

    class FakeFetcher:
        cfg = FetchConfig(max_redirects=2)

        def __init__(self, exchanges):
            self.exchanges = exchanges

        async def get(self, url, turn, **kw):
            await turn()
            return self.exchanges.pop(0)

    async def policy(exchanges, in_scope=lambda u: True):
        cache = RobotsCache("FoundryBot/0.1")

        async def turn():
            pass

        return await cache.policy("http://h/page", FakeFetcher(exchanges), turn, in_scope=in_scope)

    assert asyncio.run(policy([Exchange("u", status=404, outcome="http_error")])).allowed("http://h/x")
    assert not asyncio.run(policy([Exchange("u", status=503, outcome="http_error")])).allowed("http://h/x")
    assert not asyncio.run(policy([Exchange("u", outcome="timeout")])).allowed("http://h/x")
    redirect = Exchange("u", status=301, outcome="redirect", headers=[("Location", "http://elsewhere.org/robots.txt")])
    # a robots.txt redirect out of scope is not followed: no rules, and nothing fetched out of scope
    assert asyncio.run(policy([redirect], in_scope=lambda u: "elsewhere" not in u)).status == "missing"
