"""Topic creation against the real broker: idempotent, replication left to the cluster's
default unless asked for, and partition counts read back."""
from __future__ import annotations

import pytest
from confluent_kafka import KafkaException

from iolayer.topics_admin import (TopicPlan, admin_client, create_topics, delete_topics, ensure_topics,
                                  partition_counts, topic_config, topic_exists, topic_partitions)
from schemas import Topics

pytestmark = pytest.mark.kafka


def _replicas(bootstrap: str, topic: str) -> int:
    md = admin_client(bootstrap).list_topics(topic, timeout=10).topics[topic]
    return len(md.partitions[0].replicas)


def test_plans_are_created_once_with_their_config(kafka_bootstrap, unique_name):
    plans = [TopicPlan(f"{unique_name}.a", 3, {"cleanup.policy": "compact"}), TopicPlan(f"{unique_name}.b", 2)]
    assert ensure_topics(kafka_bootstrap, plans) == {p.name: "created" for p in plans}
    assert ensure_topics(kafka_bootstrap, plans) == {p.name: "exists" for p in plans}
    assert partition_counts(kafka_bootstrap, [p.name for p in plans]) == {f"{unique_name}.a": 3, f"{unique_name}.b": 2}
    assert topic_config(kafka_bootstrap, f"{unique_name}.a")["cleanup.policy"] == "compact"
    # the broker's default.replication.factor (1 on the single test broker) when none is given
    assert _replicas(kafka_bootstrap, f"{unique_name}.b") >= 1
    delete_topics(kafka_bootstrap, [p.name for p in plans])
    assert not topic_exists(kafka_bootstrap, f"{unique_name}.a")


def test_an_impossible_replication_is_an_error_not_a_silent_downgrade(kafka_bootstrap, unique_name):
    brokers = len(admin_client(kafka_bootstrap).list_topics(timeout=10).brokers)
    with pytest.raises(KafkaException):
        ensure_topics(kafka_bootstrap, [TopicPlan(f"{unique_name}.r", 1)], replication=brokers + 1)
    assert not topic_exists(kafka_bootstrap, f"{unique_name}.r")


def test_namespace_topics_and_a_missing_topic(kafka_bootstrap, unique_name):
    topics = Topics(namespace=unique_name, partitions=2, raw_name=f"{unique_name}.raw")
    res = create_topics(kafka_bootstrap, topics)
    assert set(res) == {s.name for s in topics.specs()} and set(res.values()) == {"created"}
    assert topic_partitions(kafka_bootstrap, topics.keyed) == 2
    with pytest.raises(RuntimeError, match="does not exist"):
        topic_partitions(kafka_bootstrap, f"{unique_name}.missing")
    assert partition_counts(kafka_bootstrap, [f"{unique_name}.missing"], timeout=0.5) == {f"{unique_name}.missing": 0}
