"""The one producer path for schema records: sources, the replay feeder, the crawler's
frontier and the shard writer's manifests all publish through it.

Idempotent confluent-kafka producer (acks=all, so a retried send is written
once), keyed by document id, delivery reports checked, and bounded memory:
when librdkafka's queue is full we poll until it drains instead of growing.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from iolayer.kafka_config import CLIENT_LOG, confluent_config  # noqa: F401 (CLIENT_LOG: also imported from here)
from schemas import Record


class BrokerUnavailable(RuntimeError):
    pass


class PublishError(RuntimeError):
    pass


@dataclass
class PublishStats:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    bytes: int = 0


def check_broker(bootstrap: str, timeout: float = 10.0, *, quiet: bool = False) -> None:
    """Raise BrokerUnavailable with a clear message if no broker answers (``quiet``: without
    librdkafka's connection-refused lines on stderr, for callers that retry)."""
    conf = confluent_config(bootstrap, {"socket.timeout.ms": int(timeout * 1000)})
    admin = AdminClient({**conf, "log_level": 0} if quiet else conf)
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnavailable(
            f"no Kafka broker answers at {bootstrap} ({exc.args[0]}); start one with `foundry kafka up`"
        ) from None


class RecordPublisher:
    """Publishes schema records to one topic; ``flush`` raises if any delivery failed."""

    def __init__(self, bootstrap: str, topic: str, *, max_queue_mb: int = 64, linger_ms: int = 20,
                 client_id: str = "foundry-source", check: bool = True, delivery_timeout_s: float = 300.0):
        if check:
            check_broker(bootstrap)
        self.topic = topic
        self.stats = PublishStats()
        self.errors: list[str] = []
        self._producer = Producer(confluent_config(bootstrap, {
            "client.id": client_id,
            "enable.idempotence": True,  # implies acks=all and in-order retries without duplicates
            "linger.ms": linger_ms,
            "compression.type": "lz4",
            # Kafka's (and aiokafka's) partitioner, so a key lands in the same partition
            # whichever client sends it.
            "partitioner": "murmur2_random",
            "queue.buffering.max.kbytes": max_queue_mb * 1024,
            "message.max.bytes": 64 * 1024 * 1024,
            # A broker outage shorter than this is ridden out by librdkafka's retries.
            "message.timeout.ms": int(delivery_timeout_s * 1000),
            "logger": CLIENT_LOG,
        }))

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.stats.failed += 1
            if len(self.errors) < 20:
                self.errors.append(f"{msg.key()!r}: {err}")
        else:
            self.stats.delivered += 1

    def publish(self, record: Record, key: str | bytes | None = None, headers: dict | None = None) -> None:
        value = record.encode()
        if key is None:
            key = getattr(record, "id", None)
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, headers=headers,
                                       on_delivery=self._on_delivery)
                break
            except BufferError:
                # Backpressure: the local queue is full; serve delivery reports until it drains.
                self._producer.poll(0.1)
        self.stats.sent += 1
        self.stats.bytes += len(value)
        self._producer.poll(0)

    def flush(self, timeout: float = 600.0) -> PublishStats:
        deadline = time.monotonic() + timeout
        while self._producer.flush(1.0) > 0:
            if time.monotonic() > deadline:
                raise PublishError(f"{len(self._producer)} messages still undelivered after {timeout}s")
        if self.stats.failed:
            raise PublishError(f"{self.stats.failed} of {self.stats.sent} messages failed: {self.errors[:5]}")
        return self.stats
