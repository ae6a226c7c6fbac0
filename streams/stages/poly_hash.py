"""Polynomial hashes (mod 2^64) of every substring of a sequence, from one prefix sum.

For a sequence c_0 .. c_{m-1} of uint64 values, the hash of c[s:e] is
sum_{s<=i<e} c_i POLY^(e-1-i), the value a rolling hash ``h = h*POLY + c`` reaches
after reading c[s:e]. With S[k] = sum_{i<k} c_i POLY^-i it is POLY^(e-1) (S[e] - S[s]):
POLY is odd, hence invertible mod 2^64, so after one cumulative sum any set of
substrings, of any lengths, hashes in a few vectorised operations. near_dedup uses
it for shingles of code points, quality_rules for word n-grams.
"""
from __future__ import annotations

import numpy as np

POLY = 0x100000001B3  # odd, so invertible mod 2^64
POLY_INV = pow(POLY, -1, 1 << 64)
_powers = (np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64))  # POLY^i, POLY^-i


def power_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """POLY^i and POLY^-i (mod 2^64) for i < n at least; grown by doubling and kept."""
    global _powers
    if len(_powers[0]) < n:
        size = max(n, 2 * len(_powers[0]))
        fwd = np.full(size, POLY, dtype=np.uint64)
        inv = np.full(size, POLY_INV, dtype=np.uint64)
        fwd[0] = inv[0] = 1
        _powers = (np.cumprod(fwd), np.cumprod(inv))  # wraps mod 2^64, which is the point
    return _powers


class PrefixHash:
    """The prefix sum of one sequence; :meth:`hashes` of any of its substrings."""

    def __init__(self, codes: np.ndarray):
        codes = np.asarray(codes, dtype=np.uint64)
        self._fwd, inv = power_tables(len(codes) + 1)
        self._prefix = np.zeros(len(codes) + 1, dtype=np.uint64)
        np.cumsum(codes * inv[: len(codes)], out=self._prefix[1:])

    def hashes(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Hash of each ``codes[s:e]`` (every e > s)."""
        return self._fwd[ends - 1] * (self._prefix[ends] - self._prefix[starts])
