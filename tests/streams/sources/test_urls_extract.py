"""URL canonicalization, scope, charset detection and main-text extraction."""
from __future__ import annotations

import gzip
import json
import re
from collections import Counter

import pytest

from streams.sources.extract import decode_body, lang_hint, links_of, main_text, page_from_bytes, robots_meta, title_of
from streams.sources.urls import Scope, canonical_url, host_of, site_of, url_doc_id


@pytest.mark.parametrize("raw,want", [
    ("HTTP://Example.COM:80/a/./b/../c?b=2&a=1&utm_source=x#top", "http://example.com/a/c?a=1&b=2"),
    ("http://example.com", "http://example.com/"),
    ("https://ex.com:443/%7euser/a%2fb?q=a b", "https://ex.com/~user/a%2Fb?q=a%20b"),
    ("https://ex.com:8443/x", "https://ex.com:8443/x"),
    ("http://bücher.de/x", "http://xn--bcher-kva.de/x"),
    ("http://ex.com/a/..", "http://ex.com/"),
    ("mailto:someone@example.com", None),
    ("javascript:void(0)", None),
    ("ftp://ex.com/file", None),
    ("http:///nohost", None),
    ("", None),
])
def test_canonical_url(raw, want):
    assert canonical_url(raw) == want


def test_canonical_url_relative_and_idempotent():
    assert canonical_url("../d?x=1", base="http://h.com/a/b/c") == "http://h.com/a/d?x=1"
    for u in ("http://h.com/a%20b/?z=1&a=%7e", "https://h.com:8080/x/y/"):
        c = canonical_url(u)
        assert canonical_url(c) == c


def test_scope_and_ids():
    s = Scope(max_depth=2)
    assert s.allows("http://www.ex.com/a", "ex.com") and s.allows("http://blog.ex.com/", "ex.com")
    assert not s.allows("http://other.com/", "ex.com") and not s.allows("http://notex.com/", "ex.com")
    assert Scope(allowed_domains=("other.com",)).allows("http://a.other.com/", "ex.com")
    assert not Scope(deny=(r"/logout",)).allows("http://ex.com/logout", "ex.com")
    assert Scope(same_site=False).allows("http://anything.org/", "ex.com")
    assert s.follows(2) and not s.follows(3)
    assert site_of("http://www.ex.com/x") == "ex.com" and host_of("http://ex.com:81/x") == "ex.com:81"
    assert url_doc_id("http://ex.com/") == url_doc_id("http://ex.com/") != url_doc_id("http://ex.com/a")


def test_decode_body_charsets():
    text = "Café crème — 中文"
    assert decode_body(text.encode("utf-8"))[0] == text
    assert decode_body(b"\xef\xbb\xbf" + "é".encode())[0] == "é"
    assert decode_body("Café".encode("latin-1"), "text/html; charset=ISO-8859-1") == ("Café", "cp1252")
    gbk = ('<html><head><meta charset="gbk"></head><body>' + "中文网页" * 20 + "</body></html>").encode("gbk")
    assert "中文网页" in decode_body(gbk, "text/html")[0]
    sjis = "<html><body><p>" + "日本語のウェブページはシフトJISで書かれています。" * 10 + "</p></body></html>"
    sjis = sjis.encode("shift_jis")
    assert "日本語のウェブページ" in decode_body(sjis)[0]
    # a header that lies: the bytes are not valid in it, detection takes over, nothing raises
    assert decode_body(b"\xff\xfe\xfa bad", "text/html; charset=utf-8")[0]


def test_title_lang_links_robots():
    html = ('<html lang="zh-CN"><head><title> A &amp; B </title><base href="http://h.com/dir/">'
            '<meta name="robots" content="noindex, nofollow"></head><body>'
            '<a href="x.html">x</a><a href=\'/y\'>y</a><a href=z>z</a><a href="#top">t</a></body></html>')
    assert title_of(html) == "A & B"
    assert lang_hint(html) == "zh" and lang_hint(None, "en-US, fr") == "en" and lang_hint("<html>") is None
    assert links_of(html, "http://h.com/page") == ["http://h.com/dir/x.html", "http://h.com/y", "http://h.com/dir/z"]
    assert robots_meta(html) == {"noindex", "nofollow"}
    page = page_from_bytes(html.encode(), "text/html")
    assert page.text == "" and "noindex" in page.robots  # noindex pages are not extracted


def _f1(pred: str, gold: str) -> float:
    p, g = Counter(re.findall(r"\w+", pred.lower())), Counter(re.findall(r"\w+", gold.lower()))
    ov = sum((p & g).values())
    return 0.0 if not ov else 2 * ov / (sum(p.values()) + sum(g.values()))


def test_extractors_on_real_pages(shared_data):
    """Both extractors find the main text of real pages (30 of them, to stay quick);
    trafilatura, the default, is the more precise."""
    pages = []
    with gzip.open(shared_data / "html_pages.jsonl.gz", "rt") as fh:
        for line in fh:
            p = json.loads(line)
            if (p.get("gold_text") or "").strip():
                pages.append(p)
            if len(pages) == 30:
                break
    scores = {ex: sum(_f1(main_text(p["html"], ex), p["gold_text"]) for p in pages) / len(pages)
              for ex in ("trafilatura", "resiliparse")}
    assert scores["trafilatura"] > 0.8 and scores["resiliparse"] > 0.7, scores
