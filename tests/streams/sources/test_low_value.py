"""Low-value generators and the near-duplicate flood: deterministic, resumable, and what they say."""
from __future__ import annotations

import itertools

import pytest

from streams.sources.low_value import LowValueSource, NearDupFlood
from streams.sources.pacing import Paced
from streams.sources.synthetic import SyntheticConfig, SyntheticSource


def _docs(source, n, position=None):
    key = source.inputs()[0]
    return list(itertools.islice(source.read(key, position), n))


@pytest.mark.parametrize("kind", ["boilerplate", "repeated"])
def test_low_value_is_deterministic_and_resumes_exactly(kind):
    src = LowValueSource(kind, seed=7)
    straight = _docs(src, 30)
    again = _docs(LowValueSource(kind, seed=7), 30)
    assert [i.doc.text for i in straight] == [i.doc.text for i in again]
    resumed = _docs(src, 20, straight[9].position)
    assert [i.doc.id for i in resumed] == [i.doc.id for i in straight[10:30]]
    assert all(i.doc.source == kind and i.doc.meta["kind"] == kind for i in straight)
    assert len({i.doc.text for i in straight}) > 20  # not one page over and over


def _repeats(text: str) -> int:
    """k when ``text`` is one sentence said k >= 2 times with one separator, else 0."""
    for sep in ("\n\n", "\n", " "):
        for k in range(40, 1, -1):  # the most copies: 6 copies are also 3 of a doubled sentence
            n = len(text) - (k - 1) * len(sep)
            if n > 0 and n % k == 0 and sep.join([text[:n // k]] * k) == text:
                return k
    return 0


def test_repeated_text_is_one_sentence_many_times_and_boilerplate_is_not():
    for i in range(20):
        assert _repeats(LowValueSource("repeated", seed=1).document(i).text) >= 4
        assert _repeats(LowValueSource("boilerplate", seed=1).document(i).text) == 0


def test_low_value_source_ends_at_n_docs_and_rejects_unknown_kind():
    assert len(_docs(LowValueSource("boilerplate", n_docs=5), 100)) == 5
    with pytest.raises(ValueError, match="unknown low-value kind"):
        LowValueSource("gibberish")


def test_flood_passes_the_base_through_then_floods_with_copies():
    base = SyntheticSource(SyntheticConfig(n_docs=1000, seed=3, dup_rate=0.0), source="forum")
    flood = NearDupFlood(base, after=40, flood_docs=200, seed=1)
    items = _docs(flood, 10_000)
    assert len(items) == 240
    head, tail = items[:40], items[40:]
    base_ids = [i.doc.id for i in _docs(base, 40)]
    assert [i.doc.id for i in head] == base_ids
    assert all(i.doc.source == "forum" for i in items)
    copies = sum(i.doc.meta["kind"] == "flood_copy" for i in tail)
    assert 0.5 < copies / len(tail) < 0.8
    assert len({i.doc.text for i in tail}) < len(tail) / 2  # a flood: mostly the same few texts


def test_flood_resumes_exactly_before_and_after_it_starts():
    base = SyntheticSource(SyntheticConfig(n_docs=100, seed=3, dup_rate=0.0), source="forum")
    flood = NearDupFlood(base, after=30, flood_docs=50, seed=2)
    straight = _docs(flood, 1000)
    for cut in (5, 29, 30, 55):
        resumed = _docs(flood, 1000, straight[cut].position)
        assert [i.doc.id for i in resumed] == [i.doc.id for i in straight[cut + 1:]]
        assert [i.doc.text for i in resumed] == [i.doc.text for i in straight[cut + 1:]]


def test_flood_starts_early_when_the_base_runs_out():
    base = LowValueSource("boilerplate", n_docs=10, source="forum")
    items = _docs(NearDupFlood(base, after=50, flood_docs=5), 100)
    assert len(items) == 15
    assert [i.doc.meta["kind"] for i in items[10:]][0] == "flood"


def test_paced_holds_the_rate_without_bursting_after_a_stall():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    src = Paced(LowValueSource("boilerplate", n_docs=11), rate=5.0, clock=lambda: now[0], sleep=sleep)
    items = _docs(src, 100)
    assert len(items) == 11
    assert now[0] == pytest.approx(2.0)  # 11 documents at 5/s: the first at once, then 0.2 s apart
    with pytest.raises(ValueError):
        Paced(LowValueSource("boilerplate"), rate=0)
