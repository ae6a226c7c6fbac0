"""HTML bytes to a document: charset detection, main-text extraction, title,
language hint and links. Shared by the crawler and WARC ingestion, so a page
gives the same text whichever way it came in.

Extractor choice (``bench/sources.py extractors`` reproduces it): on the 418
pages of ``shared/data/html_pages.jsonl.gz`` that have a gold main text,
trafilatura 2.3.1 scores bag-of-words F1 0.899 (precision 0.894) against
resiliparse 2.0's 0.854 (precision 0.814) but costs ~45 ms of CPU per page
against ~5 ms. For pretraining data precision (less boilerplate) matters more
than extraction CPU, so trafilatura is the default; ``resiliparse`` is the
fast option for bulk WARC ingestion where CPU is the bottleneck.
"""
from __future__ import annotations

import codecs
import html as htmllib
import re
from dataclasses import dataclass

EXTRACTORS = ("trafilatura", "trafilatura-fast", "resiliparse")
HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = ("text/plain",)

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.I)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.I | re.S)
_HTML_LANG = re.compile(r"""<html\b[^>]*?\blang\s*=\s*["']?([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)*)""", re.I)
_HREF = re.compile(r"""<(?:a|area)\b[^>]*?\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))""", re.I)
_BASE = re.compile(r"""<base\b[^>]*?\bhref\s*=\s*["']?([^"'\s>]+)""", re.I)
_META_ROBOTS = re.compile(r"""<meta\b[^>]*?\bname\s*=\s*["']?robots["']?[^>]*>""", re.I)
_CONTENT = re.compile(r"""\bcontent\s*=\s*["']([^"']*)""", re.I)
_WS = re.compile(r"\s+")
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def header_charset(content_type: str | None) -> str | None:
    m = re.search(r"charset\s*=\s*[\"']?([A-Za-z0-9_\-:.]+)", content_type or "", re.I)
    return m.group(1) if m else None


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        codec = codecs.lookup(name.strip().lower()).name
    except LookupError:
        return None
    # Browsers read "iso-8859-1"/"ascii" labels as windows-1252; so do we.
    return "cp1252" if codec in ("latin-1", "iso8859-1", "ascii") else codec


def decode_body(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """Bytes to text: BOM, then the HTTP charset, then <meta charset>, then UTF-8,
    then statistical detection. Never fails: the last resort replaces bad bytes.
    Returns (text, the encoding used)."""
    for bom, enc in _BOMS:
        if body.startswith(bom):
            return body.decode(enc, errors="replace"), enc
    candidates = [_codec(header_charset(content_type))]
    m = _META_CHARSET.search(body[:4096])
    if m:
        candidates.append(_codec(m.group(1).decode("ascii", "ignore")))
    candidates.append("utf-8")
    for enc in candidates:
        if enc is None:
            continue
        try:
            return body.decode(enc), enc
        except (UnicodeDecodeError, LookupError):
            continue
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(body[:200_000]).best()
        if best is not None and best.encoding:
            return body.decode(best.encoding, errors="replace"), best.encoding
    except ImportError:  # pragma: no cover - declared dependency
        pass
    return body.decode("utf-8", errors="replace"), "utf-8-replace"


def title_of(html: str) -> str | None:
    m = _TITLE.search(html[:200_000])
    if not m:
        return None
    title = _WS.sub(" ", htmllib.unescape(re.sub(r"<[^>]+>", "", m.group(1)))).strip()
    return title[:500] or None


def lang_hint(html: str | None = None, content_language: str | None = None) -> str | None:
    """The page's declared language, as a lower-case primary subtag (``zh-CN`` -> ``zh``)."""
    raw = None
    if html is not None:
        m = _HTML_LANG.search(html[:20_000])
        raw = m.group(1) if m else None
    if not raw and content_language:
        raw = content_language.split(",")[0].strip()
    if not raw:
        return None
    primary = re.split(r"[-_]", raw)[0].lower()
    return primary if primary.isalpha() and 2 <= len(primary) <= 3 else None


def robots_meta(html: str) -> set[str]:
    """Directives of ``<meta name="robots">`` (e.g. {"noindex", "nofollow"})."""
    out: set[str] = set()
    for tag in _META_ROBOTS.findall(html[:50_000]):
        m = _CONTENT.search(tag)
        if m:
            out.update(t.strip().lower() for t in m.group(1).split(","))
    return out


def links_of(html: str, base_url: str) -> list[str]:
    """Raw href values of <a>/<area> tags, resolved against <base href> when there is one.
    Canonicalization (and dropping of mailto:, javascript:, ...) is the caller's."""
    from urllib.parse import urljoin

    m = _BASE.search(html[:50_000])
    base = urljoin(base_url, htmllib.unescape(m.group(1))) if m else base_url
    out = []
    for a, b, c in _HREF.findall(html):
        href = htmllib.unescape(a or b or c).strip()
        if href and not href.startswith("#"):
            try:
                out.append(urljoin(base, href))
            except ValueError:
                continue
    return out


def main_text(html: str, extractor: str = "trafilatura") -> str:
    """The main text of an HTML page ('' when the extractor finds none)."""
    if extractor in ("trafilatura", "trafilatura-fast"):
        import trafilatura

        try:
            text = trafilatura.extract(html, include_comments=False, include_tables=True,
                                       fast=extractor == "trafilatura-fast", deduplicate=False)
        except Exception:  # noqa: BLE001 - the library raises assorted errors on broken markup
            text = None
        return text or ""
    if extractor == "resiliparse":
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.html import HTMLTree

        return extract_plain_text(HTMLTree.parse(html), main_content=True, alt_texts=False,
                                  links=False, list_bullets=False) or ""
    raise ValueError(f"unknown extractor {extractor!r}; choose one of {EXTRACTORS}")


@dataclass
class Page:
    text: str
    title: str | None
    lang: str | None
    charset: str
    robots: set[str]
    html: str | None = None  # decoded HTML, when the caller wants links


def page_from_bytes(body: bytes, content_type: str | None, *, extractor: str = "trafilatura",
                    content_language: str | None = None, keep_html: bool = False) -> Page:
    """Decode and extract an HTML or plain-text body."""
    text, charset = decode_body(body, content_type)
    if media_type(content_type) in TEXT_TYPES:
        return Page(text=text, title=None, lang=lang_hint(None, content_language), charset=charset, robots=set())
    robots = robots_meta(text)
    extracted = "" if "noindex" in robots else main_text(text, extractor)
    return Page(text=extracted, title=title_of(text), lang=lang_hint(text, content_language),
                charset=charset, robots=robots, html=text if keep_html else None)
