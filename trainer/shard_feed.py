"""Announcements of new shards: the shards topic, or a file or a list for offline runs.

Every feed hands out ``FeedItem(offset, manifest)`` in order and can be told
where to start (``seek``). The trainer's checkpoint holds the next offset to
read, so the Kafka feed never commits offsets to a consumer group: the
checkpoint *is* the position, and a restart re-reads exactly what the killed
process had not yet made durable. The shards topic has one partition (see
``schemas/topics.py``), which is what gives announcements a total order.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from schemas.records import SchemaError, ShardManifest
from schemas.topics import Topics
from iolayer.kafka_config import confluent_config

log = logging.getLogger(__name__)


@dataclass
class FeedItem:
    offset: int
    manifest: ShardManifest | None  # None: the message could not be decoded (see ``error``)
    error: str | None = None


def decode_item(offset: int, data: bytes | None) -> FeedItem:
    try:
        return FeedItem(offset, ShardManifest.decode(data))
    except SchemaError as exc:
        return FeedItem(offset, None, str(exc))


class ShardFeed(Protocol):
    def poll(self, timeout: float) -> list[FeedItem]: ...

    def seek(self, next_offset: int) -> None: ...

    def close(self) -> None: ...


class KafkaShardFeed:
    """Tails partition 0 of ``Topics(namespace).shards`` with confluent-kafka."""

    def __init__(self, bootstrap: str, namespace: str = "live", start_offset: int = 0, partition: int = 0):
        from confluent_kafka import Consumer

        self.topic = Topics(namespace).shards
        self.partition = partition
        self._consumer = Consumer(confluent_config(bootstrap, {
            "group.id": f"foundry-trainer-{namespace}",  # required by the client; nothing is committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "client.id": f"foundry-trainer-{namespace}",
        }))
        self.seek(start_offset)

    def seek(self, next_offset: int) -> None:
        from confluent_kafka import TopicPartition

        self._consumer.assign([TopicPartition(self.topic, self.partition, max(0, next_offset))])

    def poll(self, timeout: float) -> list[FeedItem]:
        from confluent_kafka import KafkaError

        items: list[FeedItem] = []
        for msg in self._consumer.consume(num_messages=500, timeout=timeout):
            err = msg.error()
            if err is not None:
                if err.code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    log.warning("shards topic %s: %s", self.topic, err)
                continue
            items.append(decode_item(msg.offset(), msg.value()))
        return items

    def close(self) -> None:
        self._consumer.close()


class ListShardFeed:
    """Manifests given in memory; offsets are list indices. ``per_poll`` limits how many arrive per poll."""

    def __init__(self, manifests: list[ShardManifest], per_poll: int | None = None):
        self.manifests = list(manifests)
        self.per_poll = per_poll
        self.next = 0

    def add(self, manifest: ShardManifest) -> None:
        self.manifests.append(manifest)

    def seek(self, next_offset: int) -> None:
        self.next = next_offset

    def poll(self, timeout: float) -> list[FeedItem]:
        end = len(self.manifests) if self.per_poll is None else min(len(self.manifests), self.next + self.per_poll)
        items = [FeedItem(i, self.manifests[i]) for i in range(self.next, end)]
        self.next = max(self.next, end)
        return items

    def close(self) -> None:
        pass


class FileShardFeed:
    """A JSON-lines file of ShardManifest records (one per line), read as it grows; offset = line number."""

    def __init__(self, path: str | Path, start_offset: int = 0):
        self.path = Path(path)
        self.next = start_offset
        self._line = 0  # line number at byte position ``_pos``
        self._pos = 0

    def seek(self, next_offset: int) -> None:
        self.next = next_offset
        self._line = self._pos = 0

    def poll(self, timeout: float) -> list[FeedItem]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._pos)
                data = fh.read()
        except OSError:
            return []
        end = data.rfind(b"\n")  # a last line without its newline may still be being written
        if end < 0:
            return []
        items = []
        for raw in data[:end].split(b"\n"):
            if self._line >= self.next and raw.strip():
                items.append(decode_item(self._line, raw))
            self._line += 1
        self._pos += end + 1
        self.next = max(self.next, self._line)
        return items

    def close(self) -> None:
        pass


def manifest_line(manifest: ShardManifest) -> str:
    """One line of a file feed."""
    return json.dumps(manifest.to_dict(), separators=(",", ":")) + "\n"
