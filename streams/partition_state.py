"""Per-partition state of the dedup agent, rebuilt from snapshots plus the log.

The state of a partition before offset ``o`` is defined as the result of
feeding offsets ``[0, o)`` of the keyed topic through the stateful stages. So
after a crash, a rebalance or a replay we rebuild it exactly: load the newest
snapshot taken at an offset ``<= o``, then read the log from there to ``o``.
Snapshots go to a compacted topic under two alternating keys per partition,
so the older one is always at or behind the committed offset.
"""
from __future__ import annotations

import json
import logging
import struct
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, Producer, TopicPartition

from iolayer.kafka_config import confluent_config
from iolayer.ranges import range_consumer, read_range
from schemas import CuratedDocument, SchemaError
from telemetry.metrics import operator_timer
from streams.stages.base import Outcome, Stage
from streams.stages.dedup import BloomDeduper

log = logging.getLogger(__name__)


def split_raw_ref(raw_ref: str | None) -> tuple[str, int] | None:
    if not raw_ref:
        return None
    part, _, off = raw_ref.rpartition(":")
    try:
        return part, int(off)
    except ValueError:
        return None


class PartitionState:
    """The stateful stages of one partition and the next offset they expect.

    It also remembers, per raw partition, the highest raw offset it has seen.
    An upstream agent that crashed re-sends raw messages it had already sent;
    they arrive here in raw order again, so a raw offset at or below that mark
    is a redelivery and is dropped without a verdict (its first copy has one).
    """

    def __init__(self, stages: Sequence[Stage], next_offset: int = 0):
        self.stages = list(stages)
        self.next_offset = next_offset
        self.since_snapshot = 0
        self.raw_high: dict[str, int] = {}
        self.redeliveries = 0

    def admit(self, raw_ref: str | None) -> bool:
        """False for a redelivered raw message; records the mark otherwise."""
        ref = split_raw_ref(raw_ref)
        if ref is None:
            return True
        part, off = ref
        if off <= self.raw_high.get(part, -1):
            self.redeliveries += 1
            return False
        self.raw_high[part] = off
        return True

    @property
    def bloom(self) -> BloomDeduper:
        return self.stages[0]  # type: ignore[return-value]

    def process(self, docs: Sequence[CuratedDocument]) -> list[Outcome]:
        outcomes: list[Outcome] = list(docs)
        for stage in self.stages:
            live = [i for i, o in enumerate(outcomes) if isinstance(o, CuratedDocument)]
            if not live:
                break
            with operator_timer(stage.name, len(live)):
                res = stage.process_batch([outcomes[i] for i in live])
            for i, r in zip(live, res):
                outcomes[i] = r
        return outcomes

    def snapshot(self) -> bytes:
        parts = [s.snapshot() for s in self.stages]  # type: ignore[attr-defined]
        head = json.dumps({"next_offset": self.next_offset, "sizes": [len(p) for p in parts],
                           "raw_high": self.raw_high}).encode()
        return struct.pack(">I", len(head)) + head + b"".join(parts)

    def restore(self, blob: bytes) -> None:
        (n,) = struct.unpack(">I", blob[:4])
        head = json.loads(blob[4:4 + n])
        pos = 4 + n
        for stage, size in zip(self.stages, head["sizes"]):
            stage.restore(blob[pos:pos + size])  # type: ignore[attr-defined]
            pos += size
        self.next_offset = head["next_offset"]
        self.raw_high = dict(head.get("raw_high", {}))


def snapshot_offset(blob: bytes) -> int:
    (n,) = struct.unpack(">I", blob[:4])
    return json.loads(blob[4:4 + n])["next_offset"]


class PartitionStateStore:
    """Builds, snapshots and rebuilds PartitionStates for the keyed topic."""

    def __init__(self, bootstrap: str, keyed_topic: str, snapshot_topic: str, state_key: str,
                 make_stages: Callable[[], list[Stage]], snapshot_every: int = 20_000):
        self.bootstrap = bootstrap
        self.keyed_topic = keyed_topic
        self.snapshot_topic = snapshot_topic
        self.state_key = state_key  # names the stage configuration: snapshots of another config are ignored
        self.make_stages = make_stages
        self.snapshot_every = snapshot_every
        self._producer: Producer | None = None

    def _consumer(self) -> Consumer:
        return range_consumer(self.bootstrap, "foundry-state-rebuild")

    def _read(self, topic: str, partition: int, start: int, end: int):
        """Messages of ``topic``/``partition`` at offsets [start, end)."""
        if end <= start:
            return
        c = self._consumer()
        try:
            low, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if start < low:
                log.warning("%s[%d]: offsets %d..%d aged out; rebuilding from %d", topic, partition, start, low, low)
                start = low
            end = min(end, high)
            if end <= start:
                return
            yield from read_range(c, topic, partition, start, end, batch=1000)
        finally:
            c.close()

    def _snapshots(self, topic: str, prefix: bytes | None = None):
        """(key, value) of every snapshot in a snapshot topic (compacted, small)."""
        c = self._consumer()
        try:
            low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        finally:
            c.close()
        for m in self._read(topic, 0, low, high):
            if m.key() and m.value() and (prefix is None or m.key().startswith(prefix)):
                yield m.key(), m.value()

    def _best_snapshot(self, partition: int, until: int) -> bytes | None:
        best, best_off = None, -1
        for _, value in self._snapshots(self.snapshot_topic, f"{self.state_key}:p{partition}:".encode()):
            off = snapshot_offset(value)
            if best_off < off <= until:
                best, best_off = value, off
        return best

    def import_filters(self, source_snapshot_topic: str, partitions: int) -> int:
        """Start this store's partitions from another namespace's newest bloom filters
        (``foundry replay --dedup-from``). Only the exact-dedup filter is taken (with the
        capacity and false-positive rate it was made with): the raw offset marks and any
        other stateful stage start empty. Both namespaces partition the keyed topic by the
        same hash over the same count, so partition p's filter holds partition p's hashes.
        Returns the number of partitions imported."""
        newest: dict[int, tuple[int, bytes]] = {}
        for key, value in self._snapshots(source_snapshot_topic):
            part = int(key.decode().rsplit(":", 2)[1][1:])
            off = snapshot_offset(value)
            if part < partitions and off > newest.get(part, (-1, b""))[0]:
                newest[part] = (off, value)
        for part, (_, value) in newest.items():
            n = struct.unpack(">I", value[:4])[0]
            bloom_size = json.loads(value[4:4 + n])["sizes"][0]  # the bloom filter's bytes come first
            fresh = PartitionState(self.make_stages(), 0)
            fresh.bloom.restore(value[4 + n:4 + n + bloom_size])
            self._send_snapshot(f"{self.state_key}:p{part}:import", fresh.snapshot())
        return len(newest)

    def _send_snapshot(self, key: str, value: bytes) -> None:
        if self._producer is None:
            self._producer = Producer(confluent_config(self.bootstrap, {"message.max.bytes": 64 << 20,
                                                                        "enable.idempotence": True}))
        self._producer.produce(self.snapshot_topic, key=key.encode(), value=value)
        self._producer.flush(30)

    def rebuild(self, partition: int, until: int) -> PartitionState:
        """The state of ``partition`` just before offset ``until``."""
        state = PartitionState(self.make_stages(), 0)
        snap = self._best_snapshot(partition, until)  # at 0 only an imported filter (replay --dedup-from)
        if snap is not None:
            try:
                state.restore(snap)
            except ValueError as err:
                # Written by a build whose stage state differs (e.g. a new signature scheme):
                # the log from offset 0 gives the same state, only slower.
                log.warning("partition %d: snapshot not usable (%s); rebuilding from the start of the log",
                            partition, err)
                state = PartitionState(self.make_stages(), 0)
        bloom_only = len(state.stages) == 1
        replayed = 0
        batch: list[CuratedDocument] = []
        for m in self._read(self.keyed_topic, partition, state.next_offset, until):
            replayed += 1
            if not state.admit(_header(m, "raw_ref")):
                continue
            if bloom_only:
                state.bloom.add(m.key().decode(), _header(m, "doc_id"))
                continue
            try:
                batch.append(CuratedDocument.decode(m.value()))
            except SchemaError:
                continue  # the live agent rejected it the same way; it changed no state
            if len(batch) >= 512:
                state.process(batch)
                batch.clear()
        if batch:
            state.process(batch)
        state.next_offset = until
        log.info("rebuilt %s[%d] up to %d (%s, %d replayed)", self.keyed_topic, partition, until,
                 "from snapshot" if snap else "from the log", replayed)
        return state

    def maybe_snapshot(self, partition: int, state: PartitionState) -> bool:
        if state.since_snapshot < self.snapshot_every:
            return False
        slot = (state.next_offset // self.snapshot_every) % 2
        self._send_snapshot(f"{self.state_key}:p{partition}:s{slot}", state.snapshot())
        state.since_snapshot = 0
        return True


def _header(msg, name: str) -> str | None:
    for k, v in msg.headers() or []:
        if k == name and v is not None:
            return v.decode()
    return None
