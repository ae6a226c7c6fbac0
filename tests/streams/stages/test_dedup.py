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
