from schemas import CuratedDocument, Rejection
from streams.stages.dedup import BloomDeduper
from streams.stages.validate import content_hash


def _doc(i, text):
    return CuratedDocument(id=f"d{i}", text=text, source="s", content_hash=content_hash(text), recipe_version="r")


def test_second_copy_is_rejected_with_first_id():
    d = BloomDeduper(capacity=1000, fp_rate=0.001)
    out = d.process_batch([_doc(0, "a b"), _doc(1, "c"), _doc(2, "a  b"), _doc(3, "c")])
    assert [type(o).__name__ for o in out] == ["CuratedDocument", "CuratedDocument", "Rejection", "Rejection"]
    assert out[2].reason == "duplicate" and out[2].duplicate_of == "d0" and out[3].duplicate_of == "d1"


def test_snapshot_restore_keeps_membership_but_not_ids():
    d = BloomDeduper(capacity=1000, fp_rate=0.001)
    d.process_batch([_doc(i, f"text {i}") for i in range(100)])
    e = BloomDeduper(capacity=1000, fp_rate=0.001)
    e.restore(d.snapshot())
    out = e.process_batch([_doc(200, "text 5"), _doc(201, "text 500")])
    assert isinstance(out[0], Rejection) and out[0].duplicate_of is None
    assert isinstance(out[1], CuratedDocument)


def test_false_positive_rate_near_configured():
    d = BloomDeduper(capacity=20_000, fp_rate=0.01)
    for i in range(20_000):
        d.add(content_hash(f"in {i}"))
    fps = sum(content_hash(f"out {i}") in d for i in range(20_000))
    assert fps / 20_000 < 0.02


def _hashes(prefix: str, n: int) -> list[str]:
    return [content_hash(f"{prefix} {i}") for i in range(n)]


def test_false_positive_rate_stays_under_the_bound_far_past_capacity():
    """At 2, 8 and 32 times the capacity a fixed-size filter's rate heads for 1; the chain's
    measured rate (and its estimate) stay under the configured one."""
    d = BloomDeduper(capacity=2_000, fp_rate=0.01, remember_ids=0)
    probes = _hashes("absent", 40_000)
    added = new = 0
    for times in (2, 8, 32):
        for h in _hashes("present", 2_000 * times)[added:]:
            new += not d.add(h)
        added = 2_000 * times
        measured = sum(h in d for h in probes) / len(probes)
        assert measured < 0.01, (times, measured, d.stats())
        assert d.fp_rate_estimate() < 0.01 and measured < 3 * d.fp_rate_estimate() + 1e-3, (times, d.stats())
        assert all(h in d for h in _hashes("present", 500))  # no false negatives
    st = d.stats()
    # Each hash not taken for a duplicate went in: 2k+4k+8k+16k+32k = 62k, the rest in a 6th filter.
    assert st["items"] == new > 63_000 and st["filters"] == 6
    # A new filter is allocated whole: right after one opens, about 4 bytes per hash held at 1 %.
    assert 0 < st["fill"] < 0.1 and st["memory_bytes"] < 64_000 * 5


def test_chain_snapshots_give_the_same_verdicts_as_an_uninterrupted_run():
    stream = _hashes("doc", 9_000) + _hashes("doc", 300)  # the tail repeats the head
    whole = BloomDeduper(capacity=1_000, fp_rate=0.01)
    want = [whole.add(h) for h in stream]
    first = BloomDeduper(capacity=1_000, fp_rate=0.01)
    got = [first.add(h) for h in stream[:5_000]]
    # Restored into a deduper configured otherwise: the snapshot's own capacity and rate hold.
    second = BloomDeduper(capacity=77, fp_rate=0.2)
    second.restore(first.snapshot())
    got += [second.add(h) for h in stream[5_000:]]
    assert got == want and sum(want[-300:]) == 300
    assert second.snapshot() == whole.snapshot()


def test_fixed_size_snapshot_of_an_earlier_build_is_refused():
    from rbloom import Bloom

    old = Bloom(1000, 0.001, lambda x: x)
    try:
        BloomDeduper(1000, 0.001).restore(old.save_bytes())
    except ValueError as err:
        assert "earlier build" in str(err)
    else:
        raise AssertionError("an old single-filter snapshot was accepted")
