"""Near-duplicate removal with MinHash-LSH (datasketch's permutations and band choice).

Operator ``near_dedup``. Each document becomes a set of shingles after NFKC,
lower-casing and removing punctuation: word ``ngram``-grams for alphabetic
text, character ``cjk_ngram``-grams (spaces included) for CJK-heavy text, where
at least ``cjk_share`` of the non-space characters are CJK; code-switched
Chinese–English text is usually CJK-heavy and its Latin words take part in the
character shingles. Its MinHash signature (``num_perm`` permutations, fixed
``seed``) is looked up in an LSH index of the documents kept so far
(:class:`BandIndex`, banded as datasketch's ``MinHashLSH``); a candidate whose
estimated Jaccard similarity is at least ``threshold`` makes the document a
``near_duplicate`` rejection with ``duplicate_of`` = the kept document's id (the
most similar one; ties go to the earliest kept) and ``score`` = the estimated Jaccard. Otherwise the
document is kept, its signature joins the index and
``doc.scores["near_dup_max_jaccard"]`` records the best similarity seen.

State: the dedup agent holds one ``NearDedup`` for the namespace, over the one
partition of the sequenced topic, so near duplicates meet whatever the
partition count (NEAR_DEDUP.md says why). ``process_batch`` is deterministic
given the state and the input order; ``snapshot()`` returns the state as
bytes (no pickle: a JSON header and the signatures as a little-endian uint64
array) and ``restore(bytes)`` rebuilds the exact same index. A replayed document whose id is already in
the index is kept again (it was kept the first time). With ``max_entries``
set, the oldest entries are dropped first when the index is full (FIFO), so
memory stays bounded: about 4.4 KB per indexed document with 128 permutations
(1 KiB of it the signature, what a snapshot holds; NEAR_DEDUP.md).

Signatures are computed here with numpy rather than by ``MinHash.update_batch``:
each shingle is a polynomial hash (mod 2^64) of its code points, all shingles of
a document from one prefix sum, finalised with splitmix64; and the 128 permutations are ``a*x + b`` mod 2^64
(odd ``a``) over those, as datasketch's ``affine64`` scheme does. No shingle
string is built, encoded or hashed one by one: on web text this made the
operator about 3x faster (bench/curation.py) with the same recall and precision
on the known pairs (tests/streams/stages/test_near_dedup.py).
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
from streams.stages.char_classes import class_table
from streams.stages.poly_hash import PrefixHash
from streams.stages.quality_rules import CJK_CLASS
from streams.stages.registry import register

_CJK = re.compile(f"[{CJK_CLASS}]")
_NON_WORD_RUN = re.compile(r"\W+")  # punctuation and spaces: one pass, one space per run
_MAGIC = b"FNDD1"
_CHUNK = 2048  # shingles per step: 2048 x 128 permutations x 8 bytes = 2 MiB


def normalize(text: str) -> str:
    """The normalised text as a string (for :func:`shingles` and texts beyond the BMP;
    :func:`normalized_codes` gives the same code points faster)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _NON_WORD_RUN.sub(" ", text).strip()


_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, vectorised (uint64 arithmetic wraps)."""
    h = h ^ (h >> _S30)
    h = h * _MIX1
    h = h ^ (h >> _S27)
    h = h * _MIX2
    return h ^ (h >> _S31)


def _is_cjk_heavy(norm: str, cjk_share: float) -> bool:
    n_chars = len(norm) - norm.count(" ")
    return len(_CJK.findall(norm)) >= cjk_share * n_chars


def normalized_codes(text: str, cjk_share: float) -> tuple[np.ndarray, bool]:
    """The code points of :func:`normalize` (``text``) as uint64, and whether it is CJK-heavy.

    The same result without the regex pass over the text: after NFKC and lower-casing
    (in C), a lookup table of the word characters (``\\w``) over the BMP marks what
    stays; each run of other characters between two words becomes one space. A text
    with characters beyond the BMP takes the string path.
    """
    folded = text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)
    raw = np.frombuffer(folded.lower().encode("utf-32-le", "surrogatepass"), dtype="<u4")
    if len(raw) and int(raw.max()) > 0xFFFF:
        norm = normalize(text)
        return np.frombuffer(norm.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.uint64), \
            _is_cjk_heavy(norm, cjk_share)
    word = class_table(r"\w")[raw]
    where = np.flatnonzero(word)
    if not len(where):
        return np.zeros(0, dtype=np.uint64), False
    first, last = where[0], where[-1]
    # a run of non-word characters is kept as one space where it starts, between two words
    run_start = ~word
    run_start[1:] &= word[:-1]
    run_start[: first + 1] = False
    run_start[last:] = False
    keep = word | run_start
    codes = np.where(word, raw, 32)[keep].astype(np.uint64)
    n_cjk = int(np.count_nonzero(class_table(_CJK.pattern)[raw] & word))
    return codes, n_cjk >= cjk_share * len(where)


def shingle_hashes(text: str, *, ngram: int = 5, cjk_ngram: int = 5, cjk_share: float = 0.2) -> np.ndarray:
    """64-bit hashes of the :func:`shingles` of ``text`` (the same set), sorted and unique.

    A shingle is a substring of the normalised text: ``cjk_ngram`` characters, or
    ``ngram`` words with their single separating spaces; so every shingle's hash
    comes from one prefix sum over the code points, with no string built per shingle.
    """
    codes, cjk_heavy = normalized_codes(text, cjk_share)
    if not len(codes):
        return np.zeros(0, dtype=np.uint64)
    size = len(codes)
    if cjk_heavy:
        starts = np.arange(max(size - cjk_ngram + 1, 1))
        ends = np.minimum(starts + cjk_ngram, size)
    else:
        spaces = np.flatnonzero(codes == 32)
        word_starts = np.concatenate(([0], spaces + 1))
        word_ends = np.concatenate((spaces, [size]))
        k = min(ngram, len(word_starts))
        starts, ends = word_starts[:len(word_starts) - k + 1], word_ends[k - 1:]
    return np.unique(_mix64(PrefixHash(codes).hashes(starts, ends)))


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
    if _is_cjk_heavy(norm, cjk_share):
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
        # datasketch's affine64 permutations, so a signature is the one its MinHash would give
        a, b = MinHash(num_perm=self.num_perm, seed=self.seed, scheme="affine64").permutations
        self._a = (np.asarray(a, dtype=np.uint64) | np.uint64(1))[None, :]  # odd: a bijection mod 2^64
        self._b = np.asarray(b, dtype=np.uint64)[None, :]
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
        self._lsh = BandIndex(self.bands, self.rows)
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
                "bands": self.bands, "rows": self.rows, "scheme": "affine64", "hash": "poly64-substring,splitmix64"}

    def snapshot(self) -> bytes:
        """The index as bytes: magic, header length, JSON header, signatures."""
        keys = list(self._sigs)
        header = json.dumps({"params": self._params(), "keys": keys, "next": self._next},
                            ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        # One copy of the signatures, joined straight from the array's buffer: at 500k entries
        # each extra copy is another 0.5 GB at every snapshot.
        sigs = np.empty((len(keys), self.num_perm), dtype="<u8")
        for i, k in enumerate(keys):
            sigs[i] = self._sigs[k]
        return b"".join((_MAGIC, struct.pack("<I", len(header)), header, sigs.reshape(-1).view(np.uint8)))

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

    def signature(self, text: str) -> np.ndarray | None:
        """The MinHash signature of ``text`` (``num_perm`` uint64), or None for a text without shingles."""
        hv = shingle_hashes(text, ngram=self.ngram, cjk_ngram=self.cjk_ngram, cjk_share=self.cjk_share)
        if not len(hv):
            return None
        sig = np.full(self.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
        buf = np.empty((min(len(hv), _CHUNK), self.num_perm), dtype=np.uint64)
        for i in range(0, len(hv), _CHUNK):  # bounded memory for very long documents
            x = hv[i:i + _CHUNK, None]
            out = buf[:len(x)]
            np.multiply(x, self._a, out=out)
            np.add(out, self._b, out=out)
            np.minimum(sig, out.min(axis=0), out=sig)
        return sig

    def _insert(self, key: str, sig: np.ndarray, bands: list[int] | None = None) -> None:
        if self.max_entries is not None:
            while len(self._sigs) >= self.max_entries:
                old, old_sig = self._sigs.popitem(last=False)
                self._order.pop(old, None)
                self._lsh.remove(old, self._lsh.band_keys(old_sig))
        self._lsh.insert(key, bands if bands is not None else self._lsh.band_keys(sig))
        self._sigs[key] = sig
        self._order[key] = self._next
        self._next += 1

    def best_match(self, sig: np.ndarray, bands: list[int] | None = None) -> tuple[str | None, float]:
        """The most similar indexed document to signature ``sig`` (estimated Jaccard), earliest on
        ties; ``bands``: its band keys, when already known."""
        best_key, best_j = None, 0.0
        bands = bands if bands is not None else self._lsh.band_keys(sig)
        for key in sorted(self._lsh.query(bands), key=self._order.__getitem__):
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
            sig = self.signature(doc.text) if len(doc.text.strip()) >= self.min_chars else None
            if sig is None:
                out.append(doc)
                continue
            bands = self._lsh.band_keys(sig)
            key, j = self.best_match(sig, bands)
            if key is not None and j >= self.threshold:
                out.append(self.reject(doc, Reason.NEAR_DUPLICATE,
                                       f"near_dedup: estimated Jaccard {j:.3f} >= {self.threshold} with {key}",
                                       score=j, duplicate_of=key))
                continue
            self._insert(doc.id, sig, bands)
            doc.scores["near_dup_max_jaccard"] = round(j, 6)
            out.append(doc)
        return out


class BandIndex:
    """Banded LSH over MinHash signatures, as datasketch's ``MinHashLSH`` does it: two
    signatures are candidates when all ``rows`` values of any of the ``bands`` bands are
    equal. A band's rows are folded into one 64-bit int (a sum of products, splitmix64), and
    each table maps it to the one indexed key holding it, or to a list when several do:
    most buckets hold one key, and a bytes key with a dict per bucket cost about 11 KB per
    indexed document at 30 bands, this about a third of it. Two different bands folding
    to the same int (about 2^-64 per pair) only add a candidate, which the Jaccard check
    then judges; the tests check the candidates equal ``MinHashLSH``'s."""

    def __init__(self, bands: int, rows: int):
        self.bands, self.rows = bands, rows
        self._tables: list[dict[int, str | list[str]]] = [{} for _ in range(bands)]
        # odd multipliers, one per row: the fold is a sum of products mod 2^64, then mixed
        self._mult = _mix64(np.arange(1, rows + 1, dtype=np.uint64)) | np.uint64(1)

    def band_keys(self, sig: np.ndarray) -> list[int]:
        rows = sig[: self.bands * self.rows].reshape(self.bands, self.rows)
        return _mix64((rows * self._mult).sum(axis=1, dtype=np.uint64)).tolist()

    def insert(self, key: str, bands: list[int]) -> None:
        for table, band in zip(self._tables, bands):
            held = table.get(band)
            if held is None:
                table[band] = key
            elif isinstance(held, list):
                held.append(key)
            else:
                table[band] = [held, key]

    def remove(self, key: str, bands: list[int]) -> None:
        for table, band in zip(self._tables, bands):
            held = table.get(band)
            if held == key:
                del table[band]
            elif isinstance(held, list) and key in held:
                held.remove(key)
                if len(held) == 1:
                    table[band] = held[0]

    def query(self, bands: list[int]) -> set[str]:
        """The indexed keys that share at least one band (of :meth:`band_keys`)."""
        out: set[str] = set()
        for table, band in zip(self._tables, bands):
            held = table.get(band)
            if held is None:
                continue
            if isinstance(held, list):
                out.update(held)
            else:
                out.add(held)
        return out


@register("near_dedup")
def near_dedup(**params: Any) -> NearDedup:
    return NearDedup(**params)
