from collections import Counter

import numpy as np
import pytest

from streams.stages.ngram_repeats import NGrams


def test_ngram_statistics_match_a_plain_count():
    """NGrams restricts each n to positions whose shorter n-grams repeat; the result
    must equal counting every n-gram directly."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        units = [str(u) for u in rng.integers(0, 6, size=int(rng.integers(0, 80)))]
        lens = [len(u) for u in units]
        total = sum(lens)
        g = NGrams(units)
        for n in (2, 3, 4, 5, 6, 8, 10):  # increasing, as the rule asks
            grams = [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]
            counts = Counter(grams)
            covered = set()
            for i, gram in enumerate(grams):
                if counts[gram] > 1:
                    covered.update(range(i, i + n))
            want_dup = sum(lens[i] for i in covered) / total if total else 0.0
            top = max(counts.values(), default=0)
            want_top = (max(sum(len(u) for u in gram) for gram, c in counts.items() if c == top) * top / total
                        if top > 1 and total else 0.0)
            assert g.top_char_frac(n) == pytest.approx(want_top)
            assert g.dup_char_frac(n) == pytest.approx(want_dup)
