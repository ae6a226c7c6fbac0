"""Where ValueScore records go: the namespace's values topic, or memory (tests, benchmarks).

Delivery is at least once: records are flushed before every checkpoint, and
records published after the last checkpoint are published again, identical,
after a restart (same document, step and model version), so a consumer can
keep the last record per ``(doc_id, model_version)``.
"""
from __future__ import annotations

import logging
from typing import Protocol

from schemas.records import ValueScore
from schemas.topics import Topics
from telemetry.metrics import record_value_scores
from iolayer.kafka_config import confluent_config

log = logging.getLogger(__name__)


class ValuePublisher(Protocol):
    def publish(self, records: list[ValueScore]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class MemoryValuePublisher:
    def __init__(self) -> None:
        self.records: list[ValueScore] = []

    def publish(self, records: list[ValueScore]) -> None:
        self.records.extend(records)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class KafkaValuePublisher:
    """Produces to ``Topics(namespace).values``, keyed by document id (aggregates by their key)."""

    def __init__(self, bootstrap: str, namespace: str = "live", *, flush_timeout_s: float = 30.0):
        from confluent_kafka import Producer

        self.topic = Topics(namespace).values
        self.flush_timeout_s = flush_timeout_s
        self.errors = 0
        self._producer = Producer(confluent_config(bootstrap, {
            "linger.ms": 50,
            "compression.type": "zstd",
            "enable.idempotence": True,
            "client.id": f"foundry-trainer-{namespace}",
        }))

    def _delivered(self, err, msg) -> None:  # noqa: ANN001 - confluent callback
        if err is not None:
            self.errors += 1
            log.warning("value score not delivered to %s: %s", self.topic, err)

    def publish(self, records: list[ValueScore]) -> None:
        for rec in records:
            while True:
                try:
                    self._producer.produce(self.topic, key=rec.doc_id.encode(), value=rec.encode(),
                                           on_delivery=self._delivered)
                    break
                except BufferError:  # local queue full: let it drain
                    self._producer.poll(0.1)
            self._producer.poll(0)
        record_value_scores(records)

    def flush(self) -> None:
        left = self._producer.flush(self.flush_timeout_s)
        if left:
            raise RuntimeError(f"{left} value scores still undelivered to {self.topic} after "
                               f"{self.flush_timeout_s}s")

    def close(self) -> None:
        self.flush()


class JsonlValuePublisher:
    """Appends records as JSON lines to a file (offline runs without a broker)."""

    def __init__(self, path: str) -> None:
        self._fh = open(path, "a", encoding="utf-8")

    def publish(self, records: list[ValueScore]) -> None:
        for rec in records:
            self._fh.write(rec.encode().decode("utf-8") + "\n")

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
