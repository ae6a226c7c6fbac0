"""Near-duplicate removal with MinHash-LSH (datasketch).

Operator ``near_dedup``. Each document becomes a set of shingles after NFKC,
lower-casing and removing punctuation: word ``ngram``-grams for alphabetic
text, character ``cjk_ngram``-grams (spaces included) for CJK-heavy text, where
at least ``cjk_share`` of the non-space characters are CJK; code-switched
Chinese–English text is usually CJK-heavy and its Latin words take part in the
character shingles. Its MinHash signature
(``num_perm`` permutations, fixed ``seed``) is looked up in an LSH index of the
documents kept so far; a candidate whose estimated Jaccard similarity is at
least ``threshold`` makes the document a ``near_duplicate`` rejection with
``duplicate_of`` = the kept document's id (the most similar one; ties go to
the earliest kept) and ``score`` = the estimated Jaccard. Otherwise the
document is kept, its signature joins the index and
``doc.scores["near_dup_max_jaccard"]`` records the best similarity seen.

State: one ``NearDedup`` instance per Kafka partition holds that partition's
index. ``process_batch`` is deterministic given the state and the input
order; ``snapshot()`` returns the state as bytes (no pickle: a JSON header
and the signatures as a little-endian uint64 array) and ``restore(bytes)``
rebuilds the exact same index. A replayed document whose id is already in
the index is kept again (it was kept the first time). With ``max_entries``
set, the oldest entries are dropped first when the index is full (FIFO), so
memory stays bounded: about 1 KiB per kept document with 128 permutations.
"""
from __future__ import annotations

import json
import re
import struct
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from schemas import CuratedDocument, Reason
from streams.stages.base import Outcome, Stage
from streams.stages.quality_rules import CJK_CLASS
from streams.stages.registry import register

_CJK = re.compile(f"[{CJK_CLASS}]")
_NON_WORD = re.compile(r"[^\w\s]+")
_WS = re.compile(r"\s+")
_MAGIC = b"FNDD1"


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = _NON_WORD.sub(" ", text)
    return _WS.sub(" ", text).strip()


def shingles(text: str, *, ngram: int = 5, cjk_ngram: int = 5, cjk_share: float = 0.2) -> set[str]:
    """The shingle set of a text, after :func:`normalize`.

    CJK-heavy text (at least ``cjk_share`` of the non-space characters are CJK):
    character ``cjk_ngram``-grams over the normalized text, spaces included, so
    the Latin words of code-switched text take part too. Other text: word
    ``ngram``-grams. A text shorter than one n-gram is a single shingle.
    """
    norm = normalize(text)
    if not norm:
        return set()
    n_chars = len(norm) - norm.count(" ")
    if len(_CJK.findall(norm)) >= cjk_share * n_chars:
        if len(norm) <= cjk_ngram:
            return {norm}
        return {norm[i:i + cjk_ngram] for i in range(len(norm) - cjk_ngram + 1)}
    words = norm.split(" ")
    if len(words) <= ngram:
        return {" ".join(words)}
    return {" ".join(words[i:i + ngram]) for i in range(len(words) - ngram + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class NearDedup(Stage):
    name = "near_dedup"

    def __init__(self, threshold: float = 0.5, num_perm: int = 128, ngram: int = 5, cjk_ngram: int = 5,
                 cjk_share: float = 0.2, seed: int = 1, bands: int | None = None, rows: int | None = None,
                 false_negative_weight: float = 0.8,
                 max_entries: int | None = 500_000, min_chars: int = 1):
        from datasketch import MinHash, MinHashLSH

        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        self.threshold = float(threshold)
        self.num_perm = int(num_perm)
        self.ngram = int(ngram)
        self.cjk_ngram = int(cjk_ngram)
        self.cjk_share = float(cjk_share)
        self.seed = int(seed)
        self.max_entries = max_entries
        self.min_chars = int(min_chars)  # shorter texts are not indexed (kept, never matched)
        self._MinHash = MinHash
        self._MinHashLSH = MinHashLSH
        self._template = MinHash(num_perm=self.num_perm, seed=self.seed, scheme="affine64")
        if bands is None or rows is None:
            # Candidates are checked against the threshold afterwards, so a
            # missed candidate costs more than a spurious one: weigh false
            # negatives higher than datasketch's default (0.5, 0.5).
            fnw = float(false_negative_weight)
            probe = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm, weights=(1.0 - fnw, fnw))
            bands, rows = probe.b, probe.r
        self.bands, self.rows = int(bands), int(rows)
        self._reset()

    # ------------------------------------------------------------------ state

    def _reset(self) -> None:
        self._lsh = self._MinHashLSH(threshold=self.threshold, num_perm=self.num_perm,
                                     params=(self.bands, self.rows))
        self._sigs: OrderedDict[str, np.ndarray] = OrderedDict()  # insertion order = age
        self._order: dict[str, int] = {}
        self._next = 0

    def __len__(self) -> int:
        """Documents in the index."""
        return len(self._sigs)

    def __bool__(self) -> bool:  # a stage is never falsy, even with an empty index
        return True

    def _params(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "num_perm": self.num_perm, "ngram": self.ngram,
                "cjk_ngram": self.cjk_ngram, "cjk_share": self.cjk_share, "seed": self.seed,
                "bands": self.bands, "rows": self.rows, "scheme": "affine64", "hash": "xxh64"}

    def snapshot(self) -> bytes:
        """The index as bytes: magic, header length, JSON header, signatures."""
        keys = list(self._sigs)
        header = json.dumps({"params": self._params(), "keys": keys, "next": self._next},
                            ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        sigs = (np.stack([self._sigs[k] for k in keys]) if keys
                else np.zeros((0, self.num_perm), dtype=np.uint64)).astype("<u8")
        return _MAGIC + struct.pack("<I", len(header)) + header + sigs.tobytes()

    def restore(self, data: bytes) -> None:
        if not data.startswith(_MAGIC):
            raise ValueError("not a near_dedup snapshot")
        off = len(_MAGIC)
        (n_header,) = struct.unpack_from("<I", data, off)
        off += 4
        header = json.loads(data[off:off + n_header].decode("utf-8"))
        off += n_header
        if header["params"] != self._params():
            raise ValueError(f"snapshot parameters {header['params']} differ from this stage's {self._params()}")
        keys = header["keys"]
        sigs = np.frombuffer(data, dtype="<u8", offset=off).reshape(len(keys), self.num_perm)
        self._reset()
        for key, sig in zip(keys, sigs):
            self._insert(key, sig.astype(np.uint64))
        self._next = int(header["next"])

    # ------------------------------------------------------------------ work

    def minhash(self, text: str):
        """The MinHash of ``text`` (a datasketch ``MinHash``), or None for a text without shingles."""
        import xxhash

        sh = shingles(text, ngram=self.ngram, cjk_ngram=self.cjk_ngram, cjk_share=self.cjk_share)
        if not sh:
            return None
        m = self._MinHash(num_perm=self.num_perm, seed=self.seed, scheme="affine64",
                          permutations=self._template.permutations, hashfunc=xxhash.xxh64_intdigest)
        m.update_batch([s.encode("utf-8") for s in sorted(sh)])
        return m

    def signature(self, text: str) -> np.ndarray | None:
        m = self.minhash(text)
        return None if m is None else m.hashvalues.astype(np.uint64)

    def _minhash(self, sig: np.ndarray):
        return self._MinHash(seed=self.seed, scheme="affine64", hashvalues=sig,
                             permutations=self._template.permutations)

    def _insert(self, key: str, sig: np.ndarray, m=None) -> None:
        if self.max_entries is not None:
            while len(self._sigs) >= self.max_entries:
                old, _ = self._sigs.popitem(last=False)
                self._order.pop(old, None)
                self._lsh.remove(old)
        self._lsh.insert(key, m if m is not None else self._minhash(sig), check_duplication=False)
        self._sigs[key] = sig
        self._order[key] = self._next
        self._next += 1

    def best_match(self, m) -> tuple[str | None, float]:
        """The most similar indexed document to MinHash ``m`` (estimated Jaccard), earliest on ties."""
        best_key, best_j = None, 0.0
        sig = m.hashvalues
        for key in sorted(self._lsh.query(m), key=self._order.__getitem__):
            j = float(np.count_nonzero(self._sigs[key] == sig)) / self.num_perm
            if j > best_j:
                best_key, best_j = key, j
        return best_key, best_j

    def process_batch(self, docs: Sequence[CuratedDocument]) -> list[Outcome]:
        out: list[Outcome] = []
        for doc in docs:
            if doc.id in self._sigs:  # a replay of a document kept before
                out.append(doc)
                continue
            m = self.minhash(doc.text) if len(doc.text.strip()) >= self.min_chars else None
            if m is None:
                out.append(doc)
                continue
            key, j = self.best_match(m)
            if key is not None and j >= self.threshold:
                out.append(self.reject(doc, Reason.NEAR_DUPLICATE,
                                       f"near_dedup: estimated Jaccard {j:.3f} >= {self.threshold} with {key}",
                                       score=j, duplicate_of=key))
                continue
            self._insert(doc.id, m.hashvalues.astype(np.uint64), m)
            doc.scores["near_dup_max_jaccard"] = round(j, 6)
            out.append(doc)
        return out


@register("near_dedup")
def near_dedup(**params: Any) -> NearDedup:
    return NearDedup(**params)
