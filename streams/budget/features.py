"""Budget keys, document buckets and the keep probability: shared by the allocator and the stage.

Keys of a :class:`~schemas.BudgetUpdate` (in ``budgets`` and ``weights``):

* ``"<source>"``              - a source;
* ``"<source>|<dim>=<value>"`` - a bucket of a source along one dimension, e.g. ``web|lang=de`` or
  ``web|len=2`` (length bucket 2, see :func:`len_bucket`);
* ``"*"``                     - any source the allocator has not seen yet.

``budgets[key]`` is the number of tokens the key may contribute per window; ``weights[key]``
is the keep rate that enforces it (budget / estimated supply, in ``[min_keep, 1]``): the share
of the key's documents the pruning stage admits. A document of source ``s`` with buckets
``b_1 .. b_n`` (one per dimension) is kept with probability

    p = clip(w[s] * prod_i (w[s|b_i] / w[s]),  lo, 1),   lo = min(w[s], w[s|b_1], ..., w[s|b_n])

(buckets the update does not name count as factor 1). The product treats the dimensions as
independent within a source; the lower bound keeps every document at least at the lowest keep
rate that applies to it, so a bucket's floor is never undercut by the other dimension.

Whether the document is kept is decided by comparing ``p`` with a uniform number derived from
a hash of its content hash (:func:`unit_hash`): the same document under the same budget
version always gets the same verdict, and as a keep rate rises the admitted set only grows.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import xxhash

from streams.stages.char_classes import CJK_CHAR

UNKNOWN = "*"
DEFAULT_DIMS: tuple[str, ...] = ("lang", "len")
# Token-length bucket edges: len=0 below 64 tokens, 1 below 256, 2 below 1024, 3 below 4096, 4 above.
DEFAULT_LEN_EDGES: tuple[int, ...] = (64, 256, 1024, 4096)

_CJK = CJK_CHAR


def escape(part: str) -> str:
    """A source or bucket value safe inside a key (``|`` and ``=`` are separators)."""
    return part.replace("%", "%25").replace("|", "%7C").replace("=", "%3D")


def source_key(source: str | None) -> str:
    return escape(source or "unknown")


def bucket_key(source: str | None, dim: str, value: str) -> str:
    return f"{source_key(source)}|{dim}={escape(str(value))}"


def parse_key(key: str) -> tuple[str, str | None, str | None]:
    """``"web|lang=de"`` -> ("web", "lang", "de"); ``"web"`` -> ("web", None, None). Parts stay escaped."""
    src, sep, rest = key.partition("|")
    if not sep:
        return src, None, None
    dim, _, value = rest.partition("=")
    return src, dim, value


def len_bucket(n_tokens: float, edges: Sequence[int] = DEFAULT_LEN_EDGES) -> str:
    for i, edge in enumerate(edges):
        if n_tokens < edge:
            return str(i)
    return str(len(edges))


def lang_value(lang: str | None) -> str:
    return (lang or "unk").strip().lower() or "unk"


def estimate_tokens(text: str, *, bytes_per_token: float = 4.0, cjk_chars_per_token: float = 1.0) -> float:
    """Tokens a text will have, before it is tokenized: CJK characters and other UTF-8 bytes apart."""
    n_cjk = len(_CJK.findall(text))
    other = max(0, len(text.encode("utf-8", "replace")) - 3 * n_cjk)
    return n_cjk / cjk_chars_per_token + other / bytes_per_token


def doc_buckets(lang: str | None, n_tokens: float, dims: Sequence[str] = DEFAULT_DIMS,
                len_edges: Sequence[int] = DEFAULT_LEN_EDGES, extra: Mapping[str, str] | None = None
                ) -> dict[str, str]:
    """The bucket value of a document along each dimension (``extra`` supplies other dimensions)."""
    out: dict[str, str] = {}
    for dim in dims:
        if dim == "lang":
            out[dim] = lang_value(lang)
        elif dim == "len":
            out[dim] = len_bucket(n_tokens, len_edges)
        elif extra and dim in extra:
            out[dim] = str(extra[dim])
    return out


def keep_probability(weights: Mapping[str, float], source: str | None, buckets: Mapping[str, str]
                     ) -> tuple[float, float, str]:
    """(keep probability of the document, keep rate of its source, the key that decided the source rate).

    ``weights`` is ``BudgetUpdate.weights``; see the module docstring for the rule.
    """
    skey = source_key(source)
    if skey in weights:
        base, used = float(weights[skey]), skey
    else:
        base, used = float(weights.get(UNKNOWN, 1.0)), UNKNOWN
    if used == UNKNOWN or base <= 0.0:
        return max(0.0, min(1.0, base)), base, used
    p, lo = base, base
    for dim, value in buckets.items():
        w = weights.get(bucket_key(source, dim, value))
        if w is None:
            continue
        w = float(w)
        p *= w / base
        lo = min(lo, w)
    return max(lo, min(1.0, p)), base, used


def unit_hash(content_hash: str, salt: str = "budget-v1") -> float:
    """A number in [0, 1) fixed by the document's content hash (and the salt)."""
    return xxhash.xxh64_intdigest(f"{salt}:{content_hash}".encode("utf-8")) / 2.0 ** 64
