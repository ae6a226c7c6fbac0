"""Reading a range of a topic, and the offsets that bound it: the one read-a-range loop.

Every job that reads a bounded slice of a topic (a replay, a state rebuild, a recovery
scan, a tokenizer's training sample) goes through :func:`read_range`: offsets
[start, end) of one partition in offset order. It ends at ``end`` even when the last
offsets hold no message (transaction markers, compacted-away records): the partition's
end-of-partition event says so. It raises when nothing arrives for ``stall_s`` seconds
instead of waiting forever.
"""
from __future__ import annotations

import time
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from iolayer.kafka_config import confluent_config

_COORDINATOR_STARTING = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                         KafkaError.COORDINATOR_NOT_AVAILABLE}


def range_consumer(bootstrap: str, group: str = "foundry-inspect", **extra) -> Consumer:
    """A consumer for reading ranges: assigned by hand, never committing, end-of-partition
    events on, large messages allowed (``extra`` overrides)."""
    return Consumer(confluent_config(bootstrap, {
        "group.id": group, "enable.auto.commit": False, "enable.partition.eof": True,
        "fetch.message.max.bytes": 64 << 20, **extra}))


def read_range(consumer: Consumer, topic: str, partition: int, start: int, end: int, *,
               batch: int = 500, stall_s: float = 60.0) -> Iterator[Message]:
    """Messages of ``topic[partition]`` at offsets [start, end), in order (``consumer`` from
    :func:`range_consumer`). The consumer is unassigned afterwards, also when the caller stops early."""
    if end <= start:
        return
    consumer.assign([TopicPartition(topic, partition, start)])
    try:
        give_up = time.monotonic() + stall_s
        while True:
            # short polls: consume() waits out its whole timeout when fewer messages remain
            msgs = consumer.consume(batch, timeout=0.3)
            if msgs:
                give_up = time.monotonic() + stall_s
            elif time.monotonic() > give_up:
                raise TimeoutError(f"{topic}[{partition}]: offsets up to {end} did not arrive within {stall_s:.0f}s")
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF and m.offset() >= end:
                        return  # nothing more in the range, though its last offsets held no message
                    continue
                if m.offset() >= end:
                    return
                yield m
                if m.offset() == end - 1:
                    return
    finally:
        consumer.unassign()


def watermarks(bootstrap: str, topic: str, *, consumer: Consumer | None = None,
               timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    """(low, high) offsets of every partition of ``topic``; a clear error if it does not exist."""
    c = consumer or range_consumer(bootstrap)
    try:
        md = c.list_topics(topic, timeout=timeout).topics[topic]
        if md.error is not None:
            raise RuntimeError(f"topic {topic}: {md.error}")
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout, cached=False)
                for p in sorted(md.partitions)}
    finally:
        if consumer is None:
            c.close()


def committed(bootstrap: str, group: str, topic: str, partitions: list[int], *,
              wait_s: float = 60.0) -> dict[int, int]:
    """The group's committed offset per partition (0 where none).

    A broker that has just started answers "coordinator load in progress" / "not
    coordinator" for a while (its offsets topic is still loading): those retriable
    errors are retried for up to ``wait_s`` seconds.
    """
    deadline = time.monotonic() + wait_s
    c = Consumer(confluent_config(bootstrap, {"group.id": group, "enable.auto.commit": False}))
    try:
        while True:
            try:
                res = c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
                return {tp.partition: max(tp.offset, 0) for tp in res}
            except KafkaException as exc:
                err = exc.args[0]
                if not (err.retriable() or err.code() in _COORDINATOR_STARTING) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)
    finally:
        c.close()


def offsets_for_time(bootstrap: str, topic: str, partitions: list[int], timestamp_ms: int) -> dict[int, int]:
    """The first offset at or after ``timestamp_ms`` per partition (-1: none that late)."""
    c = range_consumer(bootstrap)
    try:
        found = c.offsets_for_times([TopicPartition(topic, p, timestamp_ms) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        c.close()
