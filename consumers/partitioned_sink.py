"""A Kafka consumer that turns each partition's messages into durable parts.

The common skeleton of the shard writer and the rejection ledger: per
partition, buffer messages in offset order; at a bound or a timeout write them
as one part (temporary name, fsync, rename) whose metadata records the offset
range; only then commit the offset. On start and on every assignment, the
parts on disk say where each partition resumes (they are written before the
commit, so they are never behind it) and which keys are already written, so a
message redelivered by an upstream retry is skipped, not written twice. Only
the newest parts are read, and only the newest keys kept (``RecentKeys``), so
memory and start-up do not grow with the output.
"""
from __future__ import annotations

import json
import logging
import signal
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from iolayer.atomic_files import atomic_write  # noqa: F401  (the sinks import it from here)
from telemetry import metrics
from iolayer.kafka_config import confluent_config
from iolayer.ranges import watermarks

log = logging.getLogger(__name__)


def _offset_file(part: Path) -> Path:
    return part.parent / "_offsets" / (part.stem + ".json")


def write_part_end(part: Path, end_offset: int) -> None:
    """Record the offset a partition resumes from after ``part``. Kept beside the
    part, not in it, so a part's bytes depend only on the documents (offsets
    shift when an upstream agent redelivers; the documents do not)."""
    f = _offset_file(part)
    f.parent.mkdir(exist_ok=True)
    atomic_write(f, lambda tmp: tmp.write_text(json.dumps({"end_offset": end_offset})))


def read_part_end(part: Path) -> int | None:
    """None if the part's offset record is missing (a crash right after the part):
    the partition then resumes from an earlier part and skips what is written."""
    f = _offset_file(part)
    return json.loads(f.read_text())["end_offset"] if f.exists() else None


class SinkStopped(SystemExit):
    """A message the sink must not skip and cannot write (a newer schema version): the sink
    stops with this message and exit status 1, after making durable what came before; the
    message stays on the topic for an upgraded sink. A SystemExit, so the command that runs
    the sink ends with the message, not a traceback."""


class RecentKeys:
    """The keys of the newest ``limit`` or so items a partition wrote, for spotting redeliveries.

    An upstream agent redelivers only what it sent after its last commit (a batch or a
    few), so a copy lands within a bounded distance of its original; keys further back
    are let go in the order they came, so memory stays at ``limit`` keys per partition
    however long the partition grows (a copy arriving further back than that would be
    written twice, and ``foundry audit`` would say so)."""

    def __init__(self, limit: int, keys=()):
        self.limit = limit
        self._batches: deque[list[str]] = deque()
        self._set: set[str] = set()
        self.add_batch(keys)

    def __contains__(self, key: str) -> bool:
        return key in self._set

    def __len__(self) -> int:
        return len(self._set)

    def add_batch(self, keys) -> None:
        batch = [k for k in keys if k not in self._set]
        if not batch:
            return
        self._batches.append(batch)
        self._set.update(batch)
        while len(self._set) > self.limit and len(self._batches) > 1:
            self._set.difference_update(self._batches.popleft())


@dataclass
class PartBuffer:
    items: list[tuple[int, Any]] = field(default_factory=list)  # (offset, item)
    keys: set[str] = field(default_factory=set)
    first_offset: int | None = None
    last_offset: int | None = None
    opened_at: float = 0.0
    size: int = 0  # in the subclass's unit (tokens, rows)
    n_bytes: int = 0


class PartitionedSink(ABC):
    """Subclasses implement ``decode``, ``key_of``, ``measure``, ``write_part`` and ``recover_partition``."""

    sink_name = "sink"  # the ``sink`` label of its metrics
    key_window = 200_000  # keys remembered per partition (RecentKeys): ~25 MB each at most

    def __init__(self, bootstrap: str, topic: str, group_id: str, *, max_size: int, max_bytes: int,
                 timeout_s: float | None):
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.max_size = max_size
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.buffers: dict[int, PartBuffer] = {}
        self.next_offset: dict[int, int] = {}
        self.seen: dict[int, RecentKeys] = {}
        self.seq: dict[int, int] = {}
        self.parts_written = 0
        self.items_written = 0
        self.skipped_redeliveries = 0
        self.diverted = 0
        self._stop = False
        self._stop_error: SinkStopped | None = None
        self.consumer: Consumer | None = None

    # --- what a subclass defines ---------------------------------------
    @abstractmethod
    def decode(self, msg) -> Any: ...

    @abstractmethod
    def key_of(self, item: Any) -> str: ...

    @abstractmethod
    def measure(self, item: Any, raw_len: int) -> int: ...

    @abstractmethod
    def write_part(self, partition: int, first_seq: int, end_offset: int, items: list[tuple[int, Any]]) -> None:
        """Make the part durable. ``first_seq`` counts the items this partition
        wrote before (parts are named by it, so names depend on the sequence of
        items, not on offsets that an upstream redelivery shifts);
        ``end_offset`` is the offset to resume from."""

    @abstractmethod
    def recover_partition(self, partition: int) -> tuple[int | None, set[str], int]:
        """(offset to resume from or None, keys already written, items written) from the parts on disk."""

    def recover_from(self, folder: Path, partition: int, read_keys) -> tuple[int | None, set[str], int]:
        """``recover_partition`` from the parts of ``partition`` in ``folder``, reading the
        newest parts only: the offset to resume from is the newest offset record (offsets
        grow with the parts), the keys are those of the newest parts up to ``key_window``
        (``read_keys(part)``), and the items written are the newest part's sequence number
        plus its rows. So an assignment costs the same however many parts there are."""
        parts = sorted(folder.glob(f"p{partition:03d}-*.parquet"))
        if not parts:
            return None, set(), 0
        written = int(parts[-1].stem.split("-")[1]) + pq.ParquetFile(parts[-1]).metadata.num_rows
        resume = next((end for end in map(read_part_end, reversed(parts)) if end is not None), None)
        keys: set[str] = set()
        for part in reversed(parts):
            if len(keys) >= self.key_window:
                break
            keys.update(read_keys(part))
        return resume, keys, written

    def divert(self, msg, item: Any) -> bool:
        """True if ``item`` was sent elsewhere (a message the sink cannot write, sent to the
        ledger): its offset advances, nothing is written. Made durable by ``before_commit``."""
        return False

    def before_commit(self) -> None:
        """Called before each offset commit: what ``divert`` sent must be delivered by then."""

    # --- the loop ------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        marks = watermarks(self.bootstrap, self.topic)
        for tp in partitions:
            resume, keys, written = self.recover_partition(tp.partition)
            self.seen[tp.partition] = RecentKeys(self.key_window, keys)
            self.seq[tp.partition] = written
            self.buffers.pop(tp.partition, None)
            # The parts on disk are the sink's state: no part yet means start from the beginning.
            tp.offset = resume if resume is not None else OFFSET_BEGINNING
            if resume is not None:
                self.next_offset[tp.partition] = resume
            low = marks.get(tp.partition, (0, 0))[0]
            if (resume or 0) < low:
                # The topic's retention deleted what this sink had not written yet: resuming at
                # the low mark (what auto.offset.reset would do) would lose them silently.
                self._stop_error = SinkStopped(
                    f"{self.topic}[{tp.partition}]: offsets {resume or 0}..{low - 1} aged out of the topic's "
                    f"retention before {self.group_id} wrote them; rebuild this output with foundry replay "
                    f"over the raw range (the raw topic keeps every document), or lengthen the retention")
                log.error("%s stops: %s", self.group_id, self._stop_error.code)
                consumer.assign([])  # an explicit empty assignment: the default one would fetch
                return
        consumer.assign(partitions)
        log.info("%s assigned %s", self.group_id, [(tp.partition, tp.offset) for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:  # unwritten buffers are re-read by the next owner
            self.buffers.pop(tp.partition, None)
            self.seen.pop(tp.partition, None)

    def stop(self, *_: Any) -> None:
        self._stop = True

    def _flush(self, partition: int) -> None:
        buf = self.buffers.pop(partition, None)
        if not buf or not buf.items:
            return
        end = buf.last_offset + 1
        kept = [(off, item) for off, item in buf.items if item is not None]
        if kept:
            seq = self.seq.get(partition, 0)
            self.write_part(partition, seq, end, kept)
            self.seq[partition] = seq + len(kept)
            self.seen.setdefault(partition, RecentKeys(self.key_window)).add_batch(buf.keys)
            self.parts_written += 1
            self.items_written += len(kept)
            metrics.record_part(self.sink_name, len(kept))
        self.next_offset[partition] = end
        self.before_commit()
        self.consumer.commit(offsets=[TopicPartition(self.topic, partition, end)], asynchronous=False)

    def _add(self, msg) -> None:
        p = msg.partition()
        item = self.decode(msg)
        buf = self.buffers.get(p)
        if buf is None:
            buf = self.buffers[p] = PartBuffer(first_offset=msg.offset(), opened_at=time.monotonic())
        if self.divert(msg, item):
            self.diverted += 1
            item = None
        elif (key := self.key_of(item)) in buf.keys or key in self.seen.setdefault(p, RecentKeys(self.key_window)):
            # An upstream redelivery: already written (or buffered). Keep its
            # offset so the position advances, but not the item.
            self.skipped_redeliveries += 1
            item = None
        else:
            buf.keys.add(key)
            raw_len = len(msg.value() or b"")
            buf.size += self.measure(item, raw_len)
            buf.n_bytes += raw_len
        buf.items.append((msg.offset(), item))
        buf.last_offset = msg.offset()
        if buf.size >= self.max_size or buf.n_bytes >= self.max_bytes:
            self._flush(p)

    def _flush_due(self, force: bool = False) -> None:
        now = time.monotonic()
        for p in list(self.buffers):
            buf = self.buffers[p]
            if force or (self.timeout_s is not None and now - buf.opened_at >= self.timeout_s):
                self._flush(p)

    def run(self, *, until_idle: float | None = None, stop_at: dict[int, int] | None = None,
            stop_at_file: str | Path | None = None, install_signals: bool = True) -> None:
        """Consume until SIGTERM/SIGINT, until ``until_idle`` seconds pass with nothing
        new (buffers are flushed first), or until every partition in ``stop_at``
        reaches its end offset (a replay's range). ``stop_at_file``: a JSON file
        ``{partition: end offset}`` that appears once the upstream is drained
        (a replay writes it); until then only bounds close a part."""
        if install_signals:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        self.consumer = Consumer(confluent_config(self.bootstrap, {
            "group.id": self.group_id, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "fetch.message.max.bytes": 64 << 20, "max.partition.fetch.bytes": 64 << 20,
            "session.timeout.ms": 10000,  # a killed writer's partitions move on after this
        }))
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        if metrics.start_exporter():
            metrics.start_lag_probe(self.bootstrap, self.group_id, [self.topic],
                                    client_config=confluent_config(self.bootstrap))
        last_msg = time.monotonic()
        try:
            while not self._stop and self._stop_error is None:
                msgs = self.consumer.consume(500, timeout=0.5)
                for m in msgs:
                    if self._stop_error is not None:
                        break  # set by the assignment callback inside consume()
                    if m.error():
                        if m.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("consumer error: %s", m.error())
                        continue
                    try:
                        self._add(m)
                    except SinkStopped as stop:
                        log.error("%s stops: %s", self.group_id, stop.code)
                        self._stop_error = stop
                        break
                    last_msg = time.monotonic()
                self._flush_due()
                if stop_at is None and stop_at_file is not None and Path(stop_at_file).exists():
                    stop_at = {int(k): v for k, v in json.loads(Path(stop_at_file).read_text()).items()}
                if stop_at is not None and self._reached(stop_at):
                    break
                if until_idle is not None and time.monotonic() - last_msg >= until_idle:
                    self._flush_due(force=True)
                    if not self.buffers:
                        break
        finally:
            # A clean stop makes what is buffered durable; a kill leaves it to be re-read.
            # Without a timeout (a replay) only bounds and the range end may close a
            # part, so that the same input always gives the same parts.
            if self.timeout_s is not None or (stop_at is not None and self._reached(stop_at)):
                try:
                    self._flush_due(force=True)
                except Exception:  # noqa: BLE001 - the broker may already be gone
                    log.exception("final flush failed; the data will be re-read on restart")
            self.consumer.close()
        if self._stop_error is not None:
            raise self._stop_error

    def _reached(self, stop_at: dict[int, int]) -> bool:
        """Flush each partition whose buffer reached its end offset; True when all are done."""
        for p, end in stop_at.items():
            buf = self.buffers.get(p)
            if buf is not None and buf.last_offset + 1 >= end:
                self._flush(p)
        return all(self.next_offset.get(p, 0) >= end for p, end in stop_at.items())
