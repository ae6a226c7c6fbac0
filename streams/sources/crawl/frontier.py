"""The crawl frontier and the seen-URL filter.

Kafka layout (two topics of this module's own, created here on first use):

* ``foundry.crawl.frontier`` - URLs to crawl (``FrontierEntry``), keyed by
  host. The crawler processes form one consumer group; since a host's
  entries all land in one partition and a partition has one owner, one
  process owns a host, and per-host politeness holds across processes.
* ``foundry.crawl.seen`` - one ``SeenEntry`` per URL the crawl has decided
  (published, rejected, skipped), also keyed by host, with as many
  partitions as the frontier: frontier partition p and seen partition p hold
  the same hosts. A process that is assigned partition p first reads seen
  partition p into memory; that is how the seen filter survives a restart.

Offsets of the frontier are committed only up to the oldest entry that is
not finished, and only after the raw documents, then the seen entries and
the newly found links are flushed. A crawler killed at any point resumes
where it stopped: finished URLs are skipped through the seen filter, the rest
are fetched. (A page whose document was delivered but whose seen entry was
not may be fetched again; it is republished under the same id.)

``MemoryFrontier`` is the same interface without Kafka, for tests and
one-off crawls.
"""
from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from iolayer.kafka_config import confluent_config
from iolayer.publisher import RecordPublisher
from iolayer.ranges import range_consumer, read_range
from iolayer.topics_admin import TopicPlan, ensure_topics, partition_counts
from schemas import Record

from ..urls import host_of, url_key

FRONTIER_TOPIC = "foundry.crawl.frontier"
SEEN_TOPIC = "foundry.crawl.seen"
DEFAULT_GROUP = "foundry-crawler"


@dataclass
class FrontierEntry(Record):
    SCHEMA: ClassVar[str] = "crawl_frontier"
    VERSION: ClassVar[int] = 1

    url: str  # canonical
    depth: int
    site: str  # the seed's site: what "same site" means for this entry
    parent: str | None = None
    discovered_at: float = 0.0


@dataclass
class SeenEntry(Record):
    SCHEMA: ClassVar[str] = "crawl_seen"
    VERSION: ClassVar[int] = 1

    url: str
    outcome: str  # published | defect:<reason> | robots | content_type | redirect | noindex | ...
    doc_id: str | None = None
    status: int | None = None
    at: float = 0.0


@dataclass
class Lease:
    entry: FrontierEntry
    partition: int = 0
    offset: int = 0


def ensure_crawl_topics(bootstrap: str, partitions: int = 4, replication: int | None = None,
                        frontier_topic: str = FRONTIER_TOPIC, seen_topic: str = SEEN_TOPIC,
                        timeout: float = 30.0) -> dict[str, int]:
    """Create the two crawl topics if missing; returns name -> partitions. Raises when
    they exist with different partition counts (the host -> partition mapping would differ)."""
    plans = [TopicPlan(frontier_topic, partitions, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
             TopicPlan(seen_topic, partitions, {"retention.ms": "-1"})]
    ensure_topics(bootstrap, plans, replication=replication, timeout=timeout)
    counts = partition_counts(bootstrap, [p.name for p in plans], timeout=timeout)
    if len(set(counts.values())) != 1:
        raise RuntimeError(f"crawl topics must have equal partition counts, found {counts}")
    return counts


class MemoryFrontier:
    """In-process frontier and seen set (no durability)."""

    def __init__(self) -> None:
        self.queue: deque[FrontierEntry] = deque()
        self.seen: dict[bytes, SeenEntry] = {}
        self.added = 0

    def add(self, entries: list[FrontierEntry]) -> None:
        self.queue.extend(entries)
        self.added += len(entries)

    def poll(self, max_n: int) -> list[Lease]:
        out = []
        while self.queue and len(out) < max_n:
            out.append(Lease(self.queue.popleft()))
        return out

    def is_seen(self, lease: Lease, url: str) -> bool:
        return url_key(url) in self.seen

    def mark_seen(self, lease: Lease, entry: SeenEntry) -> None:
        self.seen[url_key(entry.url)] = entry

    def done(self, lease: Lease) -> None:
        pass

    def owns(self, lease: Lease) -> bool:
        return True

    def assigned_at(self, lease: Lease) -> float:
        return 0.0

    def checkpoint(self, flush_docs: Callable[[], Any]) -> None:
        flush_docs()

    def drained(self, force: bool = False) -> bool:
        return not self.queue

    def set_paused(self, paused: bool) -> None:
        pass

    def close(self) -> None:
        pass


class KafkaFrontier:
    """The frontier and seen filter on Kafka (see the module docstring)."""

    def __init__(self, bootstrap: str, *, group: str = DEFAULT_GROUP, frontier_topic: str = FRONTIER_TOPIC,
                 seen_topic: str = SEEN_TOPIC, on_revoke: Callable[[list[int]], None] | None = None):
        self.bootstrap, self.frontier_topic, self.seen_topic = bootstrap, frontier_topic, seen_topic
        self.links = RecordPublisher(bootstrap, frontier_topic, client_id="foundry-crawler-frontier",
                                     linger_ms=5)
        self.seen_pub = RecordPublisher(bootstrap, seen_topic, client_id="foundry-crawler-seen", check=False,
                                        linger_ms=5)
        self.seen: dict[int, set[bytes]] = {}
        self._pending_seen: list[SeenEntry] = []
        self._inflight: dict[int, set[int]] = {}
        self._next: dict[int, int] = {}  # partition -> offset after the last entry polled
        self._assigned_at: dict[int, float] = {}  # partition -> when this process got it (monotonic)
        self._lag_checked = 0.0
        self._drained = False
        self.on_revoke_hook = on_revoke
        self.consumer = Consumer(confluent_config(bootstrap, {
            "group.id": group, "client.id": f"foundry-crawler-{os.getpid()}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000, "max.poll.interval.ms": 600000,
            "fetch.wait.max.ms": 100,
        }))
        self.consumer.subscribe([frontier_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        self.rebalances = 0

    # -- group membership
    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.rebalances += 1
        for tp in parts:
            self.seen[tp.partition] = self._load_seen(tp.partition)
            self._inflight.setdefault(tp.partition, set())
            self._assigned_at[tp.partition] = time.monotonic()
        self._drained = False

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        if self.on_revoke_hook is not None:  # flush documents, seen entries and links; commit what is finished
            self.on_revoke_hook([tp.partition for tp in parts])
        for tp in parts:
            self.seen.pop(tp.partition, None)
            self._inflight.pop(tp.partition, None)
            self._next.pop(tp.partition, None)
            self._assigned_at.pop(tp.partition, None)

    def _load_seen(self, partition: int) -> set[bytes]:
        reader = range_consumer(self.bootstrap, f"foundry-seen-loader-{os.getpid()}")
        try:
            lo, hi = reader.get_watermark_offsets(TopicPartition(self.seen_topic, partition), timeout=10, cached=False)
            keys: set[bytes] = set()
            for msg in read_range(reader, self.seen_topic, partition, lo, hi, batch=1000, stall_s=120):
                try:
                    keys.add(url_key(SeenEntry.decode(msg.value()).url))
                except ValueError:
                    pass  # a foreign or damaged record is not a URL we saw
            return keys
        finally:
            reader.close()

    # -- the frontier interface
    def add(self, entries: list[FrontierEntry]) -> None:
        for e in entries:
            self.links.publish(e, key=host_of(e.url))
        if entries:
            self._drained = False

    def poll(self, max_n: int) -> list[Lease]:
        out = []
        for msg in self.consumer.consume(max(1, max_n), timeout=0):
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(msg.error())
                continue
            p, off = msg.partition(), msg.offset()
            self._next[p] = off + 1
            try:
                entry = FrontierEntry.decode(msg.value())
            except ValueError:
                continue  # not a frontier entry: nothing to crawl (its offset is simply passed)
            self._inflight.setdefault(p, set()).add(off)
            out.append(Lease(entry, p, off))
        if out:
            self._drained = False
        return out

    def is_seen(self, lease: Lease, url: str) -> bool:
        return url_key(url) in self.seen.get(lease.partition, ())

    def mark_seen(self, lease: Lease, entry: SeenEntry) -> None:
        if lease.partition in self.seen:
            self.seen[lease.partition].add(url_key(entry.url))
        self._pending_seen.append(entry)  # published at the next checkpoint, after the documents

    def done(self, lease: Lease) -> None:
        self._inflight.get(lease.partition, set()).discard(lease.offset)

    def owns(self, lease: Lease) -> bool:
        """False once the lease's partition went to another process (rebalance)."""
        return lease.partition in self._assigned_at

    def assigned_at(self, lease: Lease) -> float:
        return self._assigned_at.get(lease.partition, 0.0)

    def checkpoint(self, flush_docs: Callable[[], Any]) -> None:
        flush_docs()  # documents first: a URL is only marked seen once its document is delivered
        pending, self._pending_seen = self._pending_seen, []
        for entry in pending:
            self.seen_pub.publish(entry, key=host_of(entry.url))
        self.seen_pub.flush()
        self.links.flush()
        offsets = []
        for p, nxt in self._next.items():
            inflight = self._inflight.get(p)
            if inflight is None:
                continue
            offsets.append(TopicPartition(self.frontier_topic, p, min(inflight) if inflight else nxt))
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                if exc.args[0].code() not in (KafkaError._NO_OFFSET, KafkaError.REBALANCE_IN_PROGRESS,
                                              KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID):
                    raise

    def drained(self, force: bool = False) -> bool:
        """True when every assigned partition has been read to its end (checked at most once a second)."""
        if self._drained and not force:
            return True
        now = time.monotonic()
        if now - self._lag_checked < 1.0 and not force:
            return False
        self._lag_checked = now
        parts = self.consumer.assignment()
        if not parts:
            return False
        for tp in self.consumer.position(parts):
            _lo, hi = self.consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            pos = tp.offset if tp.offset >= 0 else self._committed(tp)
            if pos < hi:
                return False
        self._drained = True
        return True

    def _committed(self, tp: TopicPartition) -> int:
        got = self.consumer.committed([tp], timeout=5)[0].offset
        if got >= 0:
            return got
        lo, _hi = self.consumer.get_watermark_offsets(tp, timeout=5, cached=False)
        return lo

    def set_paused(self, paused: bool) -> None:
        parts = self.consumer.assignment()
        if parts:
            (self.consumer.pause if paused else self.consumer.resume)(parts)

    def close(self) -> None:
        self.consumer.close()
