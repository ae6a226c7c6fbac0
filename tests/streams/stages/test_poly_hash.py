import numpy as np

from streams.stages.poly_hash import POLY, PrefixHash


def rolling(values, s, e) -> int:
    h = 0
    for v in values[s:e]:
        h = (h * POLY + int(v)) % (1 << 64)
    return h


def test_substring_hashes_equal_the_rolling_hash():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 1 << 63, size=300, dtype=np.uint64)
    starts = rng.integers(0, 299, size=200)
    ends = np.minimum(starts + rng.integers(1, 40, size=200), 300)
    got = PrefixHash(values).hashes(starts, ends)
    assert [int(h) for h in got] == [rolling(values, s, e) for s, e in zip(starts, ends)]


def test_equal_substrings_hash_equal_and_different_ones_differ():
    codes = np.frombuffer("abcXabcYab".encode("utf-32-le"), dtype="<u4")
    h = PrefixHash(codes)
    a = h.hashes(np.array([0, 4, 1]), np.array([3, 7, 4]))
    assert a[0] == a[1] != a[2]
