"""A generated web site for crawler tests, served by aiohttp on 127.0.0.1 only.

It runs in a background thread with its own event loop and stops itself after
``max_lifetime_s`` whatever happens to the test. Several ports can serve the
same site: each port is a different host (``127.0.0.1:port``) for the crawler,
which is how politeness across hosts and processes is tested.

Every request is logged (monotonic time, port, path, user agent) so tests can
check what was fetched, how often and how far apart.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

HOST = "127.0.0.1"  # never any other address
USER_AGENT_TOKEN = "FoundryBot"

ROBOTS = f"""User-agent: *
Disallow: /private/

User-agent: {USER_AGENT_TOKEN}
Disallow: /private/
Disallow: /nobot/
"""

WORDS = ("river stone lantern harbor meadow copper signal orchard timber canyon glacier falcon thunder "
         "willow ember prairie summit velvet marble compass beacon quarry tundra harvest").split()


def paragraph(i: int, k: int) -> str:
    words = [WORDS[(i * 7 + k * 3 + j * j) % len(WORDS)] for j in range(40)]
    return " ".join(words).capitalize() + "."


def page_html(title: str, body: str, links: list[str] = (), head: str = "") -> str:
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>{head}</head>"
            f"<body><nav><a href=\"/\">Home</a> | <a href=\"/about\">About</a></nav><article><h1>{title}</h1>"
            f"{body}</article><ul>{anchors}</ul><footer>Copyright site</footer></body></html>")


def article(i: int) -> str:
    return "".join(f"<p>{paragraph(i, k)} Page {i} unique marker {i}-{k}.</p>" for k in range(4))


@dataclass
class SiteConfig:
    n_pages: int = 20
    ports: int = 1
    hang_s: float = 20.0
    slow_s: float = 0.3
    big_bytes: int = 300_000
    max_lifetime_s: float = 240.0
    deep_levels: int = 8
    specials: bool = True  # the index links to the error/redirect/charset/binary pages


SPECIAL_LINKS = [
    "/private/secret", "/nobot/page", "/redirect/to-page-1", "/loop/a", "/chain/0", "/offsite",
    "/status/404", "/status/500", "/flaky", "/ratelimit", "/slow", "/hang", "/file.png", "/doc.pdf", "/big",
    "/latin1", "/gbk", "/sjis", "/malformed", "/deep/1", "/noindex",
    "https://www.example.com/elsewhere", "mailto:someone@example.com", "javascript:void(0)",
    "/page/1#section", "/page/1?utm_source=newsletter",
]

# What the crawler must do with each special path (outcome kind, defect reason or "published").
EXPECTED = {
    "/private/secret": "robots", "/nobot/page": "robots",
    "/redirect/to-page-1": "redirect",  # to a page that is crawled on its own
    "/loop/a": "fetch_failed", "/chain/0": "fetch_failed", "/offsite": "redirect_out_of_scope",
    "/status/404": "fetch_failed", "/status/500": "fetch_failed", "/flaky": "published",
    "/ratelimit": "published", "/slow": "published", "/hang": "fetch_failed", "/file.png": "content_type",
    "/doc.pdf": "content_type", "/big": "too_large", "/latin1": "published", "/gbk": "published",
    "/sjis": "published", "/malformed": "published", "/noindex": "noindex",
}


@dataclass
class Hit:
    t: float
    port: int
    path: str
    agent: str


@dataclass
class TestSite:
    cfg: SiteConfig = field(default_factory=SiteConfig)
    log: list[Hit] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._counts: Counter = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None

    # -- lifecycle
    def start(self) -> TestSite:
        self._thread = threading.Thread(target=self._serve, name="test-site", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("test site did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> TestSite:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url(self, path: str = "/", i: int = 0) -> str:
        return f"http://{HOST}:{self.ports[i]}{path}"

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        app = web.Application(middlewares=[self._logger])
        app.router.add_get("/{tail:.*}", self._route)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        for _ in range(self.cfg.ports):
            site = web.TCPSite(runner, HOST, 0)
            await site.start()
            self.ports.append(site._server.sockets[0].getsockname()[1])
        self._ready.set()
        try:
            await asyncio.wait_for(self._stopped.wait(), timeout=self.cfg.max_lifetime_s)
        except asyncio.TimeoutError:
            pass
        await runner.cleanup()
        me = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not me]
        for t in rest:  # handlers still sleeping (the hanging page) end with the site
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    @web.middleware
    async def _logger(self, request: web.Request, handler):
        port = request.transport.get_extra_info("sockname")[1] if request.transport else 0
        self.log.append(Hit(time.monotonic(), port, request.path_qs, request.headers.get("User-Agent", "")))
        return await handler(request)

    # -- queries for tests
    def hits(self, path: str) -> int:
        return sum(1 for h in self.log if h.path == path)

    def paths(self) -> set[str]:
        return {h.path for h in self.log}

    # -- pages
    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self._counts[path] += 1
        n = self._counts[path]
        cfg = self.cfg
        if path == "/robots.txt":
            return web.Response(text=ROBOTS, content_type="text/plain")
        if path == "/":
            links = [f"/page/{i}" for i in range(cfg.n_pages)]
            if cfg.specials:
                links += SPECIAL_LINKS
                if len(self.ports) > 1:
                    links.append(f"http://{HOST}:{self.ports[1]}/page/0")
            return self._html(page_html("Index", article(999), links))
        if path.startswith("/page/"):
            i = int(path.rsplit("/", 1)[1])
            links = ["/", f"/page/{(i + 1) % cfg.n_pages}", f"/page/{(i + 7) % cfg.n_pages}"]
            return self._html(page_html(f"Page {i}", article(i), links))
        if path == "/about":
            return self._html(page_html("About", article(1000)))
        if path == "/redirect/to-page-1":
            raise web.HTTPMovedPermanently("/page/1")
        if path == "/loop/a":
            raise web.HTTPFound("/loop/b")
        if path == "/loop/b":
            raise web.HTTPFound("/loop/a")
        if path.startswith("/chain/"):
            raise web.HTTPFound(f"/chain/{int(path.rsplit('/', 1)[1]) + 1}")
        if path == "/offsite":
            raise web.HTTPFound("http://outside.invalid/landing")
        if path.startswith("/status/"):
            return web.Response(status=int(path.rsplit("/", 1)[1]), text="error page")
        if path == "/flaky":
            if n == 1:
                return web.Response(status=503, text="try again")
            return self._html(page_html("Flaky", article(501)))
        if path == "/ratelimit":
            if n == 1:
                return web.Response(status=429, text="slow down", headers={"Retry-After": "0"})
            return self._html(page_html("Rate limited", article(502)))
        if path == "/slow":
            await asyncio.sleep(cfg.slow_s)
            return self._html(page_html("Slow", article(503)))
        if path == "/hang":
            resp = web.StreamResponse(headers={"Content-Type": "text/html"})
            await resp.prepare(request)
            await resp.write(b"<html><body><p>never finishes")
            await asyncio.sleep(cfg.hang_s)
            return resp
        if path == "/file.png":
            return web.Response(body=b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, content_type="image/png")
        if path == "/doc.pdf":
            return web.Response(body=b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + b"0" * 2000, content_type="application/pdf")
        if path == "/big":
            filler = "".join(f"<p>{paragraph(7, k)}</p>" for k in range(cfg.big_bytes // 200 + 10))
            return self._html(page_html("Big", filler))
        if path == "/latin1":
            body = page_html("Latin", "<p>Café crème brûlée à la française, façade naïve. " * 20 + "</p>")
            body = body.replace('<meta charset="utf-8">', "")
            return web.Response(body=body.encode("iso-8859-1"),
                                headers={"Content-Type": "text/html; charset=ISO-8859-1"})
        if path == "/gbk":
            text = "<p>" + "中文网页的编码是国标扩展码，爬虫需要识别字符集。" * 10 + "</p>"
            body = page_html("中文", text).replace('<meta charset="utf-8">', '<meta charset="gbk">')
            return web.Response(body=body.encode("gbk"), headers={"Content-Type": "text/html"})
        if path == "/sjis":
            text = "<p>" + "日本語のページはシフトJISで書かれることがあります。文字コードを判定します。" * 10 + "</p>"
            body = page_html("日本語", text).replace('<meta charset="utf-8">', "").replace(' lang="en"', "")
            return web.Response(body=body.encode("shift_jis"), headers={"Content-Type": "text/html"})
        if path == "/malformed":
            body = ("<html><head><title>Broken</title><meta charset=utf-8 name=x x=><body></span><div class=a b=>"
                    "<p>Unclosed paragraph with <b>bold and <i>italic</b> misnested</i>"
                    + "".join(f"<p>{paragraph(9, k)} broken marker {k}<span><font>" for k in range(5))
                    + "<table><tr><td>cell</div></p></body></html></html>")
            return web.Response(text=body, content_type="text/html")
        if path.startswith("/deep/"):
            k = int(path.rsplit("/", 1)[1])
            links = [f"/deep/{k + 1}"] if k < cfg.deep_levels else []
            return self._html(page_html(f"Deep {k}", article(600 + k), links))
        if path == "/noindex":
            return self._html(page_html("No index", article(700), ["/page/2"],
                                        head='<meta name="robots" content="noindex, nofollow">'))
        return web.Response(status=404, text="not found")

    @staticmethod
    def _html(text: str) -> web.Response:
        return web.Response(text=text, content_type="text/html", charset="utf-8")
