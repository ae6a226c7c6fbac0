"""Repeated n-grams of a unit sequence (words, or CJK characters): the statistics
behind quality_rules' repetition rule (Gopher's top-n-gram and duplicated-n-gram
character fractions), vectorised with numpy."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streams.stages.poly_hash import PrefixHash

_NONE = np.zeros(0, dtype=np.int64)


class NGrams:
    """n-gram statistics over a unit sequence, vectorised: each n-gram is a 64-bit
    polynomial hash of its unit ids (:mod:`poly_hash`; collisions are negligible here).

    Asked for increasing n, each step only looks at the positions that can still
    hold a repeated n-gram: if the n-gram at i occurs twice, so do the k-grams
    (k < n) at i and at i + n - k. On ordinary text few long n-grams repeat, so the
    steps after the first are over a small share of the positions.
    """

    def __init__(self, units: Sequence[str]):
        m = len(units)
        # Python's string hash as the unit id: only equality inside one document matters
        # (ties are broken by length, not by hash order), so its per-process salt changes
        # nothing (a 64-bit collision aside), and map() runs in C.
        ids = np.fromiter(map(hash, units), dtype=np.int64, count=m).view(np.uint64)
        self.m = m
        self.lens = np.fromiter(map(len, units), dtype=np.int64, count=m)
        self.cum = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(self.lens)))
        self.total = int(self.cum[-1])
        self._hash = PrefixHash(ids)
        self._level = 0  # the n of _repeated; 0: none yet
        self._none = False  # no _level-gram repeats, hence no longer one either
        self._repeated = np.zeros(m, dtype=bool)  # positions whose _level-gram occurs more than once

    def repeats(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Start positions of the n-grams that occur more than once, with each one's count."""
        m, k = self.m, self._level
        if m < n or (0 < k <= n and self._none):
            return _NONE, _NONE
        if 0 < k <= n:
            rep = self._repeated
            cand = np.flatnonzero(rep[: m - n + 1] & rep[n - k : m - k + 1])
        else:
            cand = np.arange(m - n + 1)
        h = self._hash.hashes(cand, cand + n)
        order = np.argsort(h)
        hs = h[order]
        run_starts = np.flatnonzero(np.concatenate(([True], hs[1:] != hs[:-1])))
        run_lens = np.diff(np.append(run_starts, len(hs)))
        counts = np.repeat(run_lens, run_lens)
        multi = counts > 1
        pos, counts = cand[order[multi]], counts[multi]
        self._level, self._none = n, not len(pos)
        self._repeated = np.zeros(m, dtype=bool)
        self._repeated[pos] = True
        return pos, counts

    def top_char_frac(self, n: int) -> float:
        """Characters in the most frequent n-gram times its count, over all characters
        (several equally frequent: the longest, so the value never depends on hash order);
        0 when no n-gram occurs twice."""
        if not self.total:
            return 0.0
        pos, counts = self.repeats(n)
        if not len(pos):
            return 0.0
        top = int(counts.max())
        starts = pos[counts == top]
        return float((self.cum[starts + n] - self.cum[starts]).max()) * top / self.total

    def dup_char_frac(self, n: int) -> float:
        """Fraction of characters covered by n-grams that occur more than once."""
        if not self.total:
            return 0.0
        starts, _ = self.repeats(n)
        if not len(starts):
            return 0.0
        m = self.m
        depth = np.cumsum(np.bincount(starts, minlength=m + 1) - np.bincount(starts + n, minlength=m + 1))[:m]
        return float(self.lens[depth > 0].sum()) / self.total
