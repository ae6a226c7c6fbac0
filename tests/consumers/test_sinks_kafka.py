"""The sinks against the real broker: messages the shard writer cannot shard."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer

from consumers.ledger import RejectionLedger
from consumers.partitioned_sink import SinkStopped
from consumers.shard_writer import ShardWriter
from iolayer.ranges import committed
from iolayer.topics_admin import create_topics
from schemas import CuratedDocument, Rejection, Topics
from streams.stages.validate import content_hash

pytestmark = pytest.mark.kafka


def _doc(i: int, tokens: bool = True) -> CuratedDocument:
    d = CuratedDocument(id=f"d{i}", text=f"text {i}", source="s", content_hash=content_hash(f"text {i}"),
                        recipe_version="rv", meta={"raw_ref": f"r.raw:0:{i}"})
    if tokens:
        d.set_tokens(np.arange(5), "sp-t")
    return d


def _send(bootstrap: str, topic: str, items: list[tuple[bytes, str | None]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    for value, raw_ref in items:
        headers = {"doc_id": b"hdr-" + raw_ref.encode(), "raw_ref": raw_ref.encode()} if raw_ref else None
        p.produce(topic, value=value, partition=0, headers=headers)
    assert p.flush(30) == 0


def _outcomes(out):
    ids = [i for f in sorted((out / "manifest").glob("*.parquet")) for i in pq.read_table(f).column("doc_id").to_pylist()]
    rows = [r for f in sorted((out / "ledger").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    return ids, rows


def test_unshardable_messages_become_ledger_rows_and_a_newer_version_stops_the_writer(kafka_bootstrap, tmp_path,
                                                                                      unique_name):
    topics = Topics(namespace=unique_name, partitions=1, raw_name=f"{unique_name}.raw")
    create_topics(kafka_bootstrap, topics)
    newer = {**_doc(90).to_dict(), "v": CuratedDocument.VERSION + 1}
    _send(kafka_bootstrap, topics.tokenized, [
        (_doc(1).encode(), "r.raw:0:1"),
        (b"\xff not json", "r.raw:0:2"),  # undecodable, with the headers the worker sends
        (json.dumps({"schema": "raw_document", "v": 1}).encode(), None),  # another record, no headers
        (_doc(4, tokens=False).encode(), "r.raw:0:4"),  # untokenized
        (_doc(5).encode(), "r.raw:0:5"),
    ])

    def writer():
        return ShardWriter(kafka_bootstrap, tmp_path, namespace=unique_name, recipe_version="rv", vocab_size=1000,
                           timeout_s=0.5, publish=False)

    w = writer()
    w.run(until_idle=12, install_signals=False)
    assert w.diverted == 3
    RejectionLedger(kafka_bootstrap, tmp_path, namespace=unique_name, recipe_version="rv",
                    timeout_s=0.5).run(until_idle=12, install_signals=False)
    ids, rows = _outcomes(tmp_path)
    assert ids == ["d1", "d5"]
    got = sorted((r["id"], r["reason"], r["stage"], r["raw_ref"]) for r in rows)
    coords = f"{topics.tokenized}:0:2"  # the raw_document message at offset 2
    assert got == sorted([("hdr-r.raw:0:2", "invalid_utf8", "shard_writer", "r.raw:0:2"),
                          (coords, "unsupported_schema", "shard_writer", coords),
                          ("hdr-r.raw:0:4", "malformed", "shard_writer", "r.raw:0:4")])

    # A newer version: what came before it is written, the writer stops at it, and again on restart.
    _send(kafka_bootstrap, topics.tokenized, [(_doc(6).encode(), "r.raw:0:6"), (json.dumps(newer).encode(), "r.raw:0:90"),
                                              (_doc(7).encode(), "r.raw:0:7")])
    for _ in range(2):
        with pytest.raises(SinkStopped, match="upgrade the shard writer"):
            writer().run(until_idle=12, install_signals=False)
        assert _outcomes(tmp_path)[0] == ["d1", "d5", "d6"]
        assert committed(kafka_bootstrap, w.group_id, topics.tokenized, [0]) == {0: 6}  # the newer one's offset


def test_sinks_stop_at_a_document_of_another_recipe_version(kafka_bootstrap, tmp_path, unique_name):
    topics = Topics(namespace=unique_name, partitions=1, raw_name=f"{unique_name}.raw")
    create_topics(kafka_bootstrap, topics)
    other = _doc(2)
    other.recipe_version = "rv-other"
    _send(kafka_bootstrap, topics.tokenized, [(_doc(1).encode(), "r.raw:0:1"), (other.encode(), "r.raw:0:2")])
    w = ShardWriter(kafka_bootstrap, tmp_path, namespace=unique_name, recipe_version="rv", vocab_size=1000,
                    timeout_s=0.5, publish=False)
    with pytest.raises(SinkStopped, match="recipe version rv-other"):
        w.run(until_idle=12, install_signals=False)
    assert _outcomes(tmp_path)[0] == ["d1"]
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    p.produce(topics.rejections, value=Rejection(id="x", reason="empty", stage="validate",
                                                  recipe_version="rv-other").encode(), partition=0)
    assert p.flush(30) == 0
    with pytest.raises(SinkStopped, match="recipe version rv-other"):
        RejectionLedger(kafka_bootstrap, tmp_path, namespace=unique_name, recipe_version="rv",
                        timeout_s=0.5).run(until_idle=12, install_signals=False)
    assert _outcomes(tmp_path)[1] == []


def test_a_sink_whose_unwritten_messages_aged_out_stops_instead_of_skipping_them(kafka_bootstrap, tmp_path,
                                                                                 unique_name):
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    topics = Topics(namespace=unique_name, partitions=1, raw_name=f"{unique_name}.raw")
    create_topics(kafka_bootstrap, topics)
    _send(kafka_bootstrap, topics.tokenized, [(_doc(i).encode(), f"r.raw:0:{i}") for i in range(5)])

    def writer():
        return ShardWriter(kafka_bootstrap, tmp_path, namespace=unique_name, recipe_version="rv", vocab_size=1000,
                           timeout_s=0.5, publish=False)

    writer().run(until_idle=12, install_signals=False)
    assert _outcomes(tmp_path)[0] == [f"d{i}" for i in range(5)]
    # While the writer is down, five more arrive and retention deletes up to offset 8.
    _send(kafka_bootstrap, topics.tokenized, [(_doc(i).encode(), f"r.raw:0:{i}") for i in range(5, 10)])
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for fut in admin.delete_records([TopicPartition(topics.tokenized, 0, 8)]).values():
        fut.result()
    with pytest.raises(SinkStopped, match=r"offsets 5\.\.7 aged out"):
        writer().run(until_idle=12, install_signals=False)
    assert _outcomes(tmp_path)[0] == [f"d{i}" for i in range(5)]  # nothing after the gap was written
