"""The density evaluation set's pieces: HTML pages cut into block-level paragraphs, each
labelled main text or boilerplate against the page's gold text, pages split by site."""
from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from urllib.parse import urlparse

_W = re.compile(r"\w+")
_Q = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "–": "-", "—": "-", "\u00a0": " "})


def norm_text(t: str) -> str:
    return " ".join(t.translate(_Q).lower().split())


def word_shingles(t: str, k: int) -> set[str]:
    w = _W.findall(t.lower())
    if not w:
        return set()
    return {" ".join(w[i : i + k]) for i in range(max(1, len(w) - k + 1))}


_BLOCK = set(("p div li td th h1 h2 h3 h4 h5 h6 br tr ul ol table section article header footer nav aside "
              "blockquote pre dd dt dl form figure figcaption main title option button label address hr center"
              ).split())
_SKIP = {"script", "style", "noscript", "template", "svg", "head", "iframe", "select", "textarea"}


class _Paragraphs(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.buf: list[str] = []
        self.out: list[str] = []
        self.skip = 0

    def flush(self):
        t = " ".join("".join(self.buf).split())
        if t:
            self.out.append(t)
        self.buf = []

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP:
            self.skip += 1
        elif tag in _BLOCK:
            self.flush()

    def handle_endtag(self, tag):
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCK:
            self.flush()

    def handle_startendtag(self, tag, attrs):
        if tag in _BLOCK:
            self.flush()

    def handle_data(self, data):
        if not self.skip:
            self.buf.append(data)


def html_paragraphs(html: str) -> list[str]:
    """Text of each block-level element (script/style/head dropped), whitespace collapsed."""
    p = _Paragraphs()
    try:
        p.feed(html)
        p.close()
    except Exception:  # a broken page still yields what was parsed
        pass
    p.flush()
    return p.out


def label_paragraph(par: str, gold_norm: str, gold_sh: set[str]) -> int | None:
    """1 = main text (in the gold text), 0 = boilerplate, None = ambiguous."""
    p = norm_text(par)
    if p in gold_norm:
        return 1
    sh = word_shingles(p, 3)
    if not sh:
        return None
    cov = len(sh & gold_sh) / len(sh)
    return 1 if cov >= 0.8 else 0 if cov <= 0.2 else None


def page_host(rec: dict) -> str:
    """The site of an html page (its URL host without www.), or its id when it has no URL."""
    url = rec.get("url")
    if url:
        host = urlparse(url).netloc.lower()
        return host[4:] if host.startswith("www.") else host
    return rec["id"]


def page_half(host: str, salt: str = "") -> int:
    """Pages are split by site, so no site has pages on both sides."""
    return int(hashlib.sha1((salt + host).encode()).hexdigest(), 16) % 2
