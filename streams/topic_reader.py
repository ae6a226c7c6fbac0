"""Reads a topic's head for one-off jobs such as training a tokenizer on the
first megabytes of the stream."""
from __future__ import annotations

import time
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from schemas import RawDocument, SchemaError


def watermarks(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "foundry-inspect", "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        if md.error is not None:
            raise RuntimeError(f"topic {topic}: {md.error}")
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in sorted(md.partitions)}
    finally:
        c.close()


_COORDINATOR_STARTING = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                         KafkaError.COORDINATOR_NOT_AVAILABLE}


def committed(bootstrap: str, group: str, topic: str, partitions: list[int], *,
              wait_s: float = 60.0) -> dict[int, int]:
    """The group's committed offset per partition (0 where none).

    A broker that has just started answers "coordinator load in progress" / "not
    coordinator" for a while (its offsets topic is still loading): those retriable
    errors are retried for up to ``wait_s`` seconds.
    """
    deadline = time.monotonic() + wait_s
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
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


def read_raw_texts(bootstrap: str, topic: str, max_bytes: int) -> Iterator[str]:
    """Texts from the start of each partition, partition by partition, until
    ``max_bytes`` (spread evenly over the partitions) are read. Deterministic
    for a given topic content."""
    marks = watermarks(bootstrap, topic)
    per_part = max_bytes // max(len(marks), 1) + 1
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "foundry-inspect", "enable.auto.commit": False,
                  "fetch.message.max.bytes": 64 << 20})
    try:
        for p, (low, high) in marks.items():
            if high <= low:
                continue
            c.assign([TopicPartition(topic, p, low)])
            used, done, empty_polls = 0, False, 0
            while not done and empty_polls < 20:
                msgs = c.consume(500, timeout=0.3)
                empty_polls = 0 if msgs else empty_polls + 1
                for m in msgs:
                    if m.error():
                        continue
                    try:
                        doc = RawDocument.decode(m.value())
                    except SchemaError:
                        doc = None
                    if doc is not None and doc.defect is None and doc.text:
                        used += len(doc.text.encode("utf-8"))
                        yield doc.text
                    if used >= per_part or m.offset() >= high - 1:
                        done = True
                        break
    finally:
        c.close()
