"""Hostile input for the fuzz tests: hypothesis strategies and a few fixed worst cases."""
from __future__ import annotations

import json
import zlib

from hypothesis import strategies as st

# Pieces that have broken parsers, paths and terminals elsewhere.
NASTY_PIECES = ["../", "..\\", "/etc/passwd", "C:\\Windows\\", "\x00", "\n", "\r\n", "\t", "\x1b[2J", "\u202e",
                "%2e%2e%2f", "~", "$(rm -rf x)", "`id`", "|", ";", "'", '"', "\\", "\ufeff", "\ud800", "\udfff",
                "\U0010ffff", "\u0301", "\u200b", "\x7f", "  ", "*", "?", "<script>", "{}", "[]"]

nasty_text = st.lists(st.one_of(st.sampled_from(NASTY_PIECES), st.text(max_size=12)), max_size=12).map("".join)

# Text of every kind a JSON string can hold (lone surrogates included, through the pieces).
hostile_text = st.one_of(nasty_text, st.text(max_size=300),
                         st.lists(st.sampled_from("ab c\n.<>&;é数\u0000"), max_size=400).map("".join))

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), hostile_text)
json_value = st.recursive(json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)), max_leaves=12)


def deep_json(depth: int = 100_000) -> bytes:
    return b'{"id": "deep", "text": ' + b"[" * depth + b"]" * depth + b"}"


def html_bomb(depth: int = 50_000) -> str:
    """Deeply nested tags, the shape that exhausts recursive tree walkers."""
    return "<html><body>" + "<div><span>" * depth + "x" + "</span></div>" * depth + "</body></html>"


@st.composite
def hostile_record(draw) -> bytes:
    """One JSONL line: an object with hostile id/text/url/source, or any JSON value, or raw bytes."""
    kind = draw(st.sampled_from(["object", "any_json", "bytes", "mixed_encoding"]))
    if kind == "object":
        obj = {k: draw(st.one_of(hostile_text, json_value)) for k in ("id", "text", "url", "lang", "source")
               if draw(st.booleans())}
        return json.dumps(obj, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if kind == "any_json":
        return json.dumps(draw(json_value)).encode("utf-8", "surrogatepass")
    if kind == "bytes":
        return draw(st.binary(max_size=300)).replace(b"\n", b" ")
    # UTF-8 with a UTF-16 and a Latin-1 stretch inside the string
    body = draw(hostile_text).encode("utf-8", "surrogatepass")
    line = b'{"id": "m", "text": "' + body + "caf\u00e9".encode("latin-1") + "汉字".encode("utf-16") + b'"}'
    return line.replace(b"\n", b" ")  # one line: a newline would end it


def gzip_bomb(n_bytes: int, head: bytes = b"", fill: bytes = b"\0") -> bytes:
    """A gzip member of ``head`` plus ``n_bytes`` of ``fill``, compressed chunk by chunk (never held whole)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [z.compress(head)]
    chunk = fill * (1 << 20)
    left = n_bytes
    while left > 0:
        parts.append(z.compress(chunk[:min(left, len(chunk))]))
        left -= len(chunk)
    parts.append(z.flush())
    return b"".join(parts)
