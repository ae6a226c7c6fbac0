"""Rebuilding a partition's dedup state from a real broker: a snapshot written by
stages with another state format (e.g. an older near-duplicate signature scheme)
is not trusted; the state is rebuilt from the log instead, and equals a rebuild
that never saw the snapshot."""
from __future__ import annotations

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from schemas import CuratedDocument
from streams.partition_state import PartitionStateStore, snapshot_messages
from streams.stages.dedup import BloomDeduper
from streams.stages.near_dedup import NearDedup
from streams.stages.validate import content_hash

pytestmark = pytest.mark.kafka

def _docs() -> list[CuratedDocument]:
    out = []
    for i in range(40):
        # 20 pairs of near-duplicates: the same 30 words, the last one differs
        words = [f"topic{i // 2}word{k}" for k in range(29)] + [["spring", "summer"][i % 2]]
        text = " ".join(words)
        out.append(CuratedDocument(id=f"d{i}", text=text, source="test", recipe_version="r",
                                   content_hash=content_hash(text), meta={"raw_ref": f"0:{i}"}))
    return out


def _make(threshold: float):
    return lambda: [BloomDeduper(10_000, 0.001), NearDedup(threshold=threshold, num_perm=64)]


def test_unusable_snapshot_falls_back_to_the_log(kafka_bootstrap, unique_name):
    keyed, snaps, empty_snaps = f"{unique_name}.keyed", f"{unique_name}.snaps", f"{unique_name}.snaps2"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for fut in admin.create_topics([NewTopic(t, 1, 1) for t in (keyed, snaps, empty_snaps)]).values():
        fut.result()
    docs = _docs()
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    for d in docs:
        p.produce(keyed, key=d.content_hash.encode(), value=d.encode(),
                  headers={"doc_id": d.id.encode(), "raw_ref": d.meta["raw_ref"].encode()})
    p.flush(30)

    # A snapshot at offset 30 written by stages whose near_dedup parameters differ.
    old = PartitionStateStore(kafka_bootstrap, keyed, snaps, "k", _make(0.9), snapshot_every=1)
    old_state = old.rebuild(0, 30)
    old_state.since_snapshot = 1
    assert old.maybe_snapshot(0, old_state)

    store = PartitionStateStore(kafka_bootstrap, keyed, snaps, "k", _make(0.5))
    with pytest.raises(ValueError):
        _make(0.5)()[1].restore(old_state.stages[1].snapshot())  # the formats really differ
    state = store.rebuild(0, 40)
    fresh = PartitionStateStore(kafka_bootstrap, keyed, empty_snaps, "k", _make(0.5)).rebuild(0, 40)
    assert state.next_offset == fresh.next_offset == 40
    assert state.snapshot() == fresh.snapshot()
    assert len(state.stages[1]) == len(fresh.stages[1]) == 20  # one of each near-duplicate pair kept


def test_a_chunked_snapshot_is_used_and_a_torn_one_is_not(kafka_bootstrap, unique_name):
    keyed, snaps = f"{unique_name}.keyed", f"{unique_name}.snaps"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for fut in admin.create_topics([NewTopic(t, 1, 1) for t in (keyed, snaps)]).values():
        fut.result()
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    for d in _docs():
        p.produce(keyed, key=d.content_hash.encode(), value=d.encode(),
                  headers={"doc_id": d.id.encode(), "raw_ref": d.meta["raw_ref"].encode()})
    p.flush(30)
    # 4 KiB chunks: the 64-permutation index of 20 documents and the filter take many
    store = PartitionStateStore(kafka_bootstrap, keyed, snaps, "k", _make(0.5), snapshot_every=10, chunk_bytes=4096)
    at_20, at_30 = store.rebuild(0, 20), store.rebuild(0, 30)
    for st in (at_20, at_30):
        st.since_snapshot = 10
        assert store.maybe_snapshot(0, st)  # slots s0 (offset 20) and s1 (offset 30)
    assert len(at_30.snapshot()) > 3 * 4096
    assert store._best_snapshot(0, 40) == at_30.snapshot()
    assert store._best_snapshot(0, 25) == at_20.snapshot()
    # A worker died rewriting slot s1: its first chunk is already another snapshot's.
    later = store.rebuild(0, 40)
    torn = snapshot_messages("k:p0:s1", later.snapshot(), 4096)
    p.produce(snaps, key=torn[0][0].encode(), value=torn[0][1])
    p.flush(30)
    assert store._best_snapshot(0, 40) == at_20.snapshot()  # the other slot
    assert store.rebuild(0, 40).snapshot() == later.snapshot()
