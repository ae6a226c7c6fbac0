"""URL canonicalization, crawl scope and URL-derived document ids.

One canonical spelling per URL is what makes the seen-URL filter and the
document ids work: ``HTTP://Example.COM:80/a/./b/../c?b=2&a=1#top`` and
``http://example.com/a/c?a=1&b=2`` are the same page, so they must hash the
same. The rules are deliberately conservative (nothing that could change which
resource a server returns, except dropping well-known tracking parameters).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
TRACKING_PARAMS = frozenset({"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "_ga", "yclid"})
TRACKING_PREFIXES = ("utm_",)
# Characters that stay as they are in a path or query; everything else is percent-encoded.
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_UNRESERVED = re.compile(r"%([0-9A-Fa-f]{2})")


def _normalize_escapes(part: str, safe: str) -> str:
    """Upper-case escapes, decode escaped unreserved characters, encode what must be encoded."""
    def fix(m: re.Match) -> str:
        ch = chr(int(m.group(1), 16))
        if ch.isascii() and (ch.isalnum() or ch in "-._~"):
            return ch
        return "%" + m.group(1).upper()

    part = _UNRESERVED.sub(fix, part)
    return quote(part, safe=safe)


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        if seg == ".":
            if i == len(segments) - 1:
                out.append("")
            continue
        if seg == "..":
            if len(out) > 1:
                out.pop()
            if i == len(segments) - 1:
                out.append("")
            continue
        out.append(seg)
    result = "/".join(out)
    return result if result.startswith("/") else "/" + result


def canonical_url(url: str, base: str | None = None) -> str | None:
    """The canonical form of an http(s) URL, or None when it is not a crawlable URL."""
    url = url.strip()
    if not url:
        return None
    if base is not None:
        try:
            url = urljoin(base, url)
        except ValueError:
            return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.rstrip(".").lower()
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return None
    if not re.fullmatch(r"[a-z0-9._\-\[\]:]+", host):
        return None
    netloc = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    path = _remove_dot_segments(_normalize_escapes(parts.path or "/", _PATH_SAFE))
    query = ""
    if parts.query:
        pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k.lower() not in TRACKING_PARAMS and not k.lower().startswith(TRACKING_PREFIXES)]
        query = urlencode(sorted(pairs), doseq=True, quote_via=quote, safe="/:@!$'()*,;-._~")
    return urlunsplit((scheme, netloc, path, query, ""))


def host_of(url: str) -> str:
    """``host[:port]`` of a canonical URL: the unit of politeness and of frontier keys."""
    return urlsplit(url).netloc


def hostname_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def site_of(url: str) -> str:
    """The site a seed stands for: its host name without a leading ``www.``."""
    host = hostname_of(url)
    return host[4:] if host.startswith("www.") else host


def url_key(url: str) -> bytes:
    """A 16-byte digest of a canonical URL, for seen sets."""
    return hashlib.blake2b(url.encode("utf-8"), digest_size=16).digest()


def url_doc_id(url: str, prefix: str = "crawl") -> str:
    """Deterministic document id of a page: the same canonical URL always gets the same id."""
    return f"{prefix}:{hashlib.blake2b(url.encode('utf-8'), digest_size=12).hexdigest()}"


def _in_domain(host: str, domain: str) -> bool:
    domain = domain.lower().lstrip(".")
    return host == domain or host.endswith("." + domain)


@dataclass(frozen=True)
class Scope:
    """Which URLs a crawl may fetch.

    ``same_site``: a URL is in scope when its host is the seed's site or a
    subdomain of it. ``allowed_domains``: these domains (and subdomains) are in
    scope too, for every seed. ``max_depth``: links further than this many hops
    from a seed are not followed. ``deny``: regular expressions of URLs never
    fetched (e.g. logout links, calendars).
    """

    same_site: bool = True
    allowed_domains: tuple[str, ...] = ()
    max_depth: int = 3
    deny: tuple[str, ...] = ()
    _deny_re: tuple[re.Pattern, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_deny_re", tuple(re.compile(p) for p in self.deny))

    def allows(self, url: str, site: str) -> bool:
        host = hostname_of(url)
        if not host:
            return False
        if any(r.search(url) for r in self._deny_re):
            return False
        if self.same_site and site and _in_domain(host, site):
            return True
        if any(_in_domain(host, d) for d in self.allowed_domains):
            return True
        return not self.same_site and not self.allowed_domains

    def follows(self, depth: int) -> bool:
        return depth <= self.max_depth
