"""Per-partition state of the dedup agent, rebuilt from snapshots plus the log.

The state of a partition before offset ``o`` is defined as the result of
feeding offsets ``[0, o)`` of the state's log (the sequenced topic) through the
stateful stages. So after a crash, a rebalance or a replay we rebuild it
exactly: load the newest snapshot taken at an offset ``<= o``, then read the log
from there to ``o``. Snapshots go to a compacted topic under two alternating
keys per partition, so the older one is always at or behind the committed offset.

A snapshot grows with the stream (about 1 KiB per near-duplicate index entry),
so it is written in chunks of at most ``CHUNK_BYTES`` (each its own message,
keyed ``<slot key>:c<i>``, carrying the snapshot's SHA-256), then a manifest
under the slot key naming the chunk count, size and digest. A reader takes a
manifest only when every chunk it names carries its digest and the whole
matches: a crash while a slot is rewritten leaves the other slot to use.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
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


# 16 MiB: a quarter of the 64 MiB message limit, so a chunk with its key and headers always fits.
CHUNK_BYTES = 16 << 20
_CHUNK_MAGIC, _MANIFEST_MAGIC = b"FNSC1", b"FNSM1"
_DIGEST = 64  # hex characters of a SHA-256


def snapshot_messages(key: str, blob: bytes, chunk_bytes: int = CHUNK_BYTES) -> list[tuple[str, bytes]]:
    """The (key, value) messages of one snapshot: its chunks, then the manifest that names them."""
    digest = hashlib.sha256(blob).hexdigest()
    view = memoryview(blob)
    n = max(1, -(-len(blob) // chunk_bytes))
    msgs = [(f"{key}:c{i}", b"".join((_CHUNK_MAGIC, digest.encode(), view[i * chunk_bytes:(i + 1) * chunk_bytes])))
            for i in range(n)]
    manifest = {"next_offset": snapshot_offset(blob), "chunks": n, "bytes": len(blob), "sha256": digest}
    msgs.append((key, _MANIFEST_MAGIC + json.dumps(manifest).encode()))
    return msgs


def join_chunks(manifest: dict, chunks: Sequence[bytes | None]) -> bytes | None:
    """The snapshot a manifest names, from its chunk messages' values in order; None when a
    chunk is missing or belongs to another snapshot (a slot rewritten since)."""
    digest = manifest["sha256"].encode()
    parts = []
    for c in chunks:
        if c is None or not c.startswith(_CHUNK_MAGIC) or c[len(_CHUNK_MAGIC):len(_CHUNK_MAGIC) + _DIGEST] != digest:
            return None
        parts.append(memoryview(c)[len(_CHUNK_MAGIC) + _DIGEST:])
    blob = b"".join(parts)
    if len(blob) != manifest["bytes"] or hashlib.sha256(blob).hexdigest() != manifest["sha256"]:
        return None
    return blob


_SLOT_KEY = re.compile(r":p(\d+):(s\d+|import)$")


class PartitionStateStore:
    """Builds, snapshots and rebuilds PartitionStates for the topic they are a function of."""

    def __init__(self, bootstrap: str, log_topic: str, snapshot_topic: str, state_key: str,
                 make_stages: Callable[[], list[Stage]], snapshot_every: int = 20_000,
                 chunk_bytes: int = CHUNK_BYTES):
        self.bootstrap = bootstrap
        self.chunk_bytes = chunk_bytes
        self.log_topic = log_topic
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

    def _manifests(self, topic: str, prefix: str = "") -> tuple[dict[str, dict], dict[str, int]]:
        """The newest manifest of every slot key in a snapshot topic (compacted) that starts
        with ``prefix``, and the offset of the newest message of every chunk key. Chunks
        are not kept: only the chosen snapshot's are read again (:meth:`_load`)."""
        c = self._consumer()
        try:
            low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        finally:
            c.close()
        manifests: dict[str, dict] = {}
        chunk_at: dict[str, int] = {}
        for m in self._read(topic, 0, low, high):
            key, value = (m.key() or b"").decode("utf-8", "replace"), m.value()
            if not key.startswith(prefix) or not value:
                continue
            if value.startswith(_MANIFEST_MAGIC):
                manifests[key] = json.loads(value[len(_MANIFEST_MAGIC):])
            elif value.startswith(_CHUNK_MAGIC):
                chunk_at[key] = m.offset()
            # else: a single-message snapshot of an earlier build, for another topology: the log
            # gives the same state, so it is not read.
        return manifests, chunk_at

    def _load(self, topic: str, key: str, manifest: dict, chunk_at: dict[str, int]) -> bytes | None:
        values: list[bytes | None] = []
        for i in range(manifest["chunks"]):
            off = chunk_at.get(f"{key}:c{i}")
            got = None
            if off is not None:
                for m in self._read(topic, 0, off, off + 1):
                    got = m.value()
            values.append(got)
        blob = join_chunks(manifest, values)
        if blob is None:
            log.warning("%s: snapshot %s is incomplete (a slot rewritten when a worker stopped?); not used",
                        topic, key)
        return blob

    def _best_snapshot(self, partition: int, until: int) -> bytes | None:
        manifests, chunk_at = self._manifests(self.snapshot_topic, f"{self.state_key}:p{partition}:")
        # newest first; an incomplete one gives way to the next
        for key, man in sorted(manifests.items(), key=lambda kv: -kv[1]["next_offset"]):
            if man["next_offset"] <= until and _SLOT_KEY.search(key):
                blob = self._load(self.snapshot_topic, key, man, chunk_at)
                if blob is not None:
                    return blob
        return None

    def import_filters(self, source_snapshot_topic: str, partitions: int) -> int:
        """Start this store's partitions from another namespace's newest bloom filters
        (``foundry replay --dedup-from``). Only the exact-dedup filter is taken (with the
        capacity and false-positive rate it was made with): the raw offset marks and any
        other stateful stage start empty. Both namespaces judge duplicates in the one
        partition of their sequenced topic, so partition p's filter is partition p's.
        Returns the number of partitions imported."""
        manifests, chunk_at = self._manifests(source_snapshot_topic)
        newest: dict[int, tuple[int, str]] = {}
        for key, man in manifests.items():
            slot = _SLOT_KEY.search(key)
            if slot is None:
                continue
            part = int(slot.group(1))
            if part < partitions and man["next_offset"] > newest.get(part, (-1, ""))[0]:
                newest[part] = (man["next_offset"], key)
        imported = 0
        for part, (_, key) in sorted(newest.items()):
            value = self._load(source_snapshot_topic, key, manifests[key], chunk_at)
            if value is None:
                continue
            n = struct.unpack(">I", value[:4])[0]
            bloom_size = json.loads(value[4:4 + n])["sizes"][0]  # the bloom filter's bytes come first
            fresh = PartitionState(self.make_stages(), 0)
            fresh.bloom.restore(value[4 + n:4 + n + bloom_size])
            self._send_snapshot(f"{self.state_key}:p{part}:import", fresh.snapshot())
            imported += 1
        return imported

    def _send_snapshot(self, key: str, blob: bytes) -> None:
        if self._producer is None:
            self._producer = Producer(confluent_config(self.bootstrap, {"message.max.bytes": 64 << 20,
                                                                        "enable.idempotence": True}))
        # Idempotent and in order: the manifest is never delivered before its chunks.
        for k, v in snapshot_messages(key, blob, self.chunk_bytes):
            try:
                self._producer.produce(self.snapshot_topic, key=k.encode(), value=v)
            except BufferError:  # the client's queue is full: let it drain, then once more
                self._producer.flush(60)
                self._producer.produce(self.snapshot_topic, key=k.encode(), value=v)
            self._producer.poll(0)
        if self._producer.flush(60) > 0:
            # Not fatal: the previous snapshot plus the log give the same state, only slower.
            log.warning("%s: snapshot %s not delivered within 60 s", self.snapshot_topic, key)

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
        for m in self._read(self.log_topic, partition, state.next_offset, until):
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
        log.info("rebuilt %s[%d] up to %d (%s, %d replayed)", self.log_topic, partition, until,
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
