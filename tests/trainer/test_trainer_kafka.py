"""``foundry train`` against a real broker: manifests in on the shards topic, value scores out."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from schemas import ShardManifest, Topics, ValueScore
from foundry.cli_train import train_command
from trainer.synthetic_shards import make_stream

pytestmark = pytest.mark.kafka


def _create_topics(bootstrap: str, topics: Topics) -> None:
    try:
        from iolayer.topics_admin import create_topics
    except ImportError:  # the admin helper is not there: create them here
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": bootstrap})
        new = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=1, config=dict(s.config))
               for s in topics.specs()]
        for fut in admin.create_topics(new).values():
            fut.result()
        return
    create_topics(bootstrap, topics)


def _publish(bootstrap: str, topic: str, manifests: list[ShardManifest]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap})
    for m in manifests:
        producer.produce(topic, key=m.shard.encode(), value=m.encode())
    assert producer.flush(30) == 0


def _read_all(bootstrap: str, topic: str, timeout_s: float = 20.0) -> list[ValueScore]:
    import time

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "trainer-test-reader",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    parts = [TopicPartition(topic, p) for p in meta.partitions]
    ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts}
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    out: list[ValueScore] = []
    done: set[int] = {p for p, end in ends.items() if end == 0}
    deadline = time.monotonic() + timeout_s
    while len(done) < len(ends) and time.monotonic() < deadline:
        for msg in consumer.consume(500, timeout=0.5):
            if msg.error():
                continue
            out.append(ValueScore.decode(msg.value()))
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
    consumer.close()
    return out


def test_train_tails_the_shards_topic_and_publishes_value_scores(kafka_bootstrap, unique_name, tmp_path):
    topics = Topics(unique_name)
    _create_topics(kafka_bootstrap, topics)
    manifests = make_stream(tmp_path / "data", n_shards=5, docs_per_shard=12, vocab_size=64, doc_len=(10, 40))
    _publish(kafka_bootstrap, topics.shards, manifests)
    sets = ["model.n_layer=1", "model.n_embd=32", "model.block_size=32", "data.micro_batch_rows=4",
            "value.publish_every=5", "export.every=10"]
    args = ["--bootstrap", kafka_bootstrap, "--namespace", unique_name, "--config", "tiny",
            "--run-dir", str(tmp_path / "run"), "--until-idle", "3"]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(train_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "stopped (idle)" in result.output

    values = _read_all(kafka_bootstrap, topics.values)
    docs = [v for v in values if not v.doc_id.startswith("aggregate:")]
    trained_shards = {m.shard for m in manifests[1:]}  # the first shard is the held-out set
    assert docs and {v.shard for v in docs} <= trained_shards
    assert len({v.shard for v in docs}) == len(trained_shards)
    assert any(v.doc_id == "aggregate:web" for v in values)
    assert all(v.model_version.startswith("r000000000-tok-test-v64-s") for v in values)
    assert (tmp_path / "run" / "export" / "latest.json").exists()

    # a restart resumes at the checkpointed offset: nothing is read twice, the run goes on
    _publish(kafka_bootstrap, topics.shards, make_stream(tmp_path / "more", n_shards=1, docs_per_shard=12,
                                                         vocab_size=64, doc_len=(10, 40), seed=4))
    result = CliRunner().invoke(train_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    import json

    run = next((tmp_path / "run" / "runs").iterdir())
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    offsets = [e["offset"] for e in events if e["event"] == "manifest"]
    assert offsets == list(range(6))  # each announcement read once over both processes
