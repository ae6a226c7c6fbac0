import json

from schemas import CuratedDocument, Rejection
from streams.partition_state import PartitionState, join_chunks, snapshot_messages, snapshot_offset
from streams.stages.dedup import BloomDeduper
from streams.stages.validate import content_hash


def _doc(i, text, raw_ref):
    return CuratedDocument(id=f"d{i}", text=text, source="s", content_hash=content_hash(text),
                           recipe_version="r", meta={"raw_ref": raw_ref})


def test_redelivered_raw_messages_are_dropped_not_judged():
    st = PartitionState([BloomDeduper(1000, 0.001)])
    first = [_doc(1, "a", "0:5"), _doc(2, "b", "1:3"), _doc(3, "a", "0:6")]
    assert [st.admit(d.meta["raw_ref"]) for d in first] == [True, True, True]
    out = st.process(first)
    assert isinstance(out[2], Rejection) and out[2].duplicate_of == "d1"
    # An upstream crash re-sends raw 0:5 and 0:6 (and 1:3): none of them is judged again,
    # so "a" is not rejected as a duplicate of itself.
    assert [st.admit(r) for r in ("0:5", "0:6", "1:3", "1:4")] == [False, False, False, True]
    assert st.redeliveries == 3


def test_snapshot_restores_bloom_offset_and_marks():
    st = PartitionState([BloomDeduper(1000, 0.001)], next_offset=42)
    st.admit("2:9")
    st.process([_doc(1, "x", "2:9")])
    blob = st.snapshot()
    assert snapshot_offset(blob) == 42
    back = PartitionState([BloomDeduper(1000, 0.001)])
    back.restore(blob)
    assert back.next_offset == 42 and not back.admit("2:9") and back.admit("2:10")
    assert isinstance(back.process([_doc(2, "x", "2:10")])[0], Rejection)


def test_a_snapshot_is_cut_into_chunks_under_the_limit_and_joined_back():
    st = PartitionState([BloomDeduper(50_000, 0.001)], next_offset=7)
    blob = st.snapshot()
    msgs = snapshot_messages("v:p0:s1", blob, chunk_bytes=10_000)
    *chunks, (man_key, man_value) = msgs
    assert man_key == "v:p0:s1" and len(chunks) == -(-len(blob) // 10_000) > 1
    assert all(len(v) <= 10_000 + 100 for _, v in chunks)  # data plus magic and digest
    assert [k for k, _ in chunks] == [f"v:p0:s1:c{i}" for i in range(len(chunks))]
    manifest = json.loads(man_value[5:])
    assert manifest["next_offset"] == 7 and manifest["chunks"] == len(chunks)
    assert join_chunks(manifest, [v for _, v in chunks]) == blob


def test_chunks_of_another_snapshot_or_a_missing_chunk_are_refused():
    a = PartitionState([BloomDeduper(50_000, 0.001)], next_offset=1)
    b = PartitionState([BloomDeduper(50_000, 0.001)], next_offset=2)
    a_msgs = snapshot_messages("k", a.snapshot(), chunk_bytes=10_000)
    b_msgs = snapshot_messages("k", b.snapshot(), chunk_bytes=10_000)
    manifest = json.loads(a_msgs[-1][1][5:])
    chunks = [v for _, v in a_msgs[:-1]]
    # a slot being rewritten when the worker died: its first chunk is already the new snapshot's
    assert join_chunks(manifest, [b_msgs[0][1]] + chunks[1:]) is None
    assert join_chunks(manifest, chunks[:-1] + [None]) is None
    assert join_chunks(manifest, chunks) == a.snapshot()
