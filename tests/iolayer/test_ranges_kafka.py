"""The one read-a-range loop against the real broker: exact bounds, early stops, ranges
ending in transaction markers, and watermarks."""
from __future__ import annotations

import pytest
from confluent_kafka import Producer

from iolayer.kafka_config import confluent_config
from iolayer.ranges import committed, range_consumer, read_range, watermarks
from iolayer.topics_admin import TopicPlan, ensure_topics

pytestmark = pytest.mark.kafka


def _fill(bootstrap: str, topic: str, n: int, partition: int = 0) -> None:
    p = Producer(confluent_config(bootstrap))
    for i in range(n):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, partition=partition)
    assert p.flush(30) == 0


def test_a_range_yields_exactly_its_offsets(kafka_bootstrap, unique_name):
    topic = f"{unique_name}.range"
    ensure_topics(kafka_bootstrap, [TopicPlan(topic, 2)])
    _fill(kafka_bootstrap, topic, 30, partition=1)
    assert watermarks(kafka_bootstrap, topic) == {0: (0, 0), 1: (0, 30)}
    c = range_consumer(kafka_bootstrap)
    try:
        assert [m.offset() for m in read_range(c, topic, 1, 5, 12)] == list(range(5, 12))
        assert [m.value() for m in read_range(c, topic, 1, 28, 30)] == [b"v28", b"v29"]
        assert list(read_range(c, topic, 1, 10, 10)) == []
        assert list(read_range(c, topic, 0, 0, 0)) == []
        for m in read_range(c, topic, 1, 0, 30):  # stopping early leaves the consumer reusable
            break
        assert [m.offset() for m in read_range(c, topic, 1, 3, 5)] == [3, 4]
        with pytest.raises(TimeoutError):
            list(read_range(c, topic, 1, 25, 40, stall_s=2))  # offsets that never come
    finally:
        c.close()
    assert committed(kafka_bootstrap, f"{unique_name}-nobody", topic, [0, 1]) == {0: 0, 1: 0}


def test_a_range_ending_in_a_transaction_marker_ends(kafka_bootstrap, unique_name):
    topic = f"{unique_name}.tx"
    ensure_topics(kafka_bootstrap, [TopicPlan(topic, 1)])
    p = Producer(confluent_config(kafka_bootstrap, {"transactional.id": f"{unique_name}-tx"}))
    p.init_transactions(60)  # the first transaction on a fresh broker creates its state topic
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, value=b"t%d" % i)
    p.commit_transaction(30)
    low, high = watermarks(kafka_bootstrap, topic)[0]
    assert high == 6  # five records and the commit marker
    c = range_consumer(kafka_bootstrap, **{"isolation.level": "read_committed"})
    try:
        assert [m.value() for m in read_range(c, topic, 0, low, high, stall_s=20)] == [b"t%d" % i for i in range(5)]
    finally:
        c.close()
