"""The ingest loop every file-like source runs in: publish through the one
producer path, checkpoint after each successful flush, resume after a crash
without publishing a document twice, ride out a broker outage, show a rate
line and end with a summary.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import KafkaException

from schemas import RawDocument
from iolayer.publisher import BrokerUnavailable, PublishError, check_broker

from telemetry.metrics import PUBLISHED, PUBLISHED_BYTES

from .progress import INPUT_HEADER, Checkpoint, CheckpointStore


@dataclass
class Item:
    """One thing read from an input: a document, or a counted non-document (``doc=None``).
    ``position`` is where a resumed read continues after this item."""

    doc: RawDocument | None
    position: Any
    kind: str = "document"
    n_bytes: int = 0  # input bytes this item accounts for (for MB/s)


class ResumableSource(Protocol):
    name: str

    def inputs(self) -> list[str]: ...

    def read(self, key: str, position: Any) -> Iterator[Item]: ...

    def size(self, key: str) -> int | None: ...


@dataclass
class Summary:
    command: str
    inputs: int = 0
    inputs_already_done: int = 0
    published: int = 0
    defects: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)  # non-documents by kind
    already_published: int = 0  # met again after a restart and not re-sent
    bytes_in: int = 0
    bytes_out: int = 0
    retries: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        rate = self.published / self.seconds if self.seconds else 0.0
        mb = self.bytes_in / 1e6
        out = [f"{self.command}: {self.published} documents published to the raw topic "
               f"in {self.seconds:.1f}s ({rate:.0f} docs/s, {mb / max(self.seconds, 1e-9):.2f} MB/s of input)",
               f"  inputs: {self.inputs} ({self.inputs_already_done} already done by an earlier run)"]
        if self.defects:
            out.append("  with defects (they go to the rejection ledger): "
                       + ", ".join(f"{k} {v}" for k, v in sorted(self.defects.items())))
        if self.skipped:
            out.append("  not documents (counted, not published): "
                       + ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())))
        if self.already_published:
            out.append(f"  already published before a restart (not sent again): {self.already_published}")
        if self.retries:
            out.append(f"  broker outages ridden out: {self.retries}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "inputs": self.inputs, "inputs_already_done": self.inputs_already_done,
                "published": self.published, "defects": dict(self.defects), "skipped": dict(self.skipped),
                "already_published": self.already_published, "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out, "retries": self.retries, "seconds": round(self.seconds, 3)}


def wait_for_broker(bootstrap: str, wait_s: float, log: Callable[[str], None] | None = None) -> None:
    """``check_broker`` (quiet), retried with backoff for up to ``wait_s`` seconds (0: one try)."""
    deadline = time.monotonic() + wait_s
    delay = 1.0
    while True:
        try:
            check_broker(bootstrap, timeout=5.0, quiet=True)
            return
        except BrokerUnavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            if log:
                log(f"{exc}; retrying in {delay:.0f}s")
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


class IngestRunner:
    """Runs a ResumableSource into the raw topic.

    ``publisher_factory()`` returns an object with ``publish(record, key=, headers=)``
    and ``flush()`` (a ``RecordPublisher``); ``watch`` gives high watermarks and
    recovery scans (a ``TopicWatch``). Both are injectable so that the loop can
    be tested without a broker.
    """

    def __init__(self, publisher_factory: Callable[[], Any], watch: Any, store: CheckpointStore, *,
                 flush_every: int = 2000, flush_secs: float = 2.0, progress: bool = True,
                 broker_retry_s: float = 0.0, bootstrap: str | None = None, restart: bool = False,
                 log: Callable[[str], None] | None = None):
        self.publisher_factory = publisher_factory
        self.watch = watch
        self.store = store
        self.flush_every = flush_every
        self.flush_secs = flush_secs
        self.progress = progress
        self.broker_retry_s = broker_retry_s
        self.bootstrap = bootstrap
        self.restart = restart
        self.log = log or (lambda m: print(m, file=sys.stderr))
        self._publisher = None
        self._snapshot: tuple[int, dict] | None = None  # summary counts at the last checkpoint

    def run(self, source: ResumableSource, command: str) -> Summary:
        from telemetry import start_exporter

        start_exporter()
        summary = Summary(command=command)
        start = time.monotonic()
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(unit="doc", unit_scale=True, desc=command, dynamic_ncols=True, mininterval=0.5,
                       file=sys.stderr)
        try:
            keys = source.inputs()
            summary.inputs = len(keys)
            for key in keys:
                self._run_input(source, key, summary, bar)
        finally:
            if bar is not None:
                bar.close()
            summary.seconds = time.monotonic() - start
        return summary

    def _publisher_now(self):
        if self._publisher is None:
            self._publisher = self.publisher_factory()
        return self._publisher

    def _run_input(self, source: ResumableSource, key: str, summary: Summary, bar) -> None:
        """One input, retried from its checkpoint while the broker is away (up to
        ``broker_retry_s`` without progress)."""
        deadline, seen = None, -1
        while True:
            try:
                self._ingest(source, key, summary, bar)
                return
            except (PublishError, KafkaException, BrokerUnavailable, TimeoutError) as exc:
                self._publisher = None  # a publisher with failed deliveries is not reused
                if self._snapshot is not None:  # what follows the checkpoint is read (and counted) again
                    summary.published, summary.defects = self._snapshot[0], Counter(self._snapshot[1])
                if self.broker_retry_s <= 0 or self.bootstrap is None:
                    raise
                now = time.monotonic()
                if summary.published != seen:  # progress since the last failure: a new outage
                    deadline, seen = now + self.broker_retry_s, summary.published
                if now > deadline:
                    raise
                self.log(f"publishing {key} failed ({exc}); waiting for the broker, then resuming "
                         f"from the last checkpoint")
                summary.retries += 1
                wait_for_broker(self.bootstrap, max(deadline - now, 1.0), self.log)
                if hasattr(self.watch, "wait_ready"):
                    self.watch.wait_ready(max(deadline - time.monotonic(), 1.0))

    def _ingest(self, source: ResumableSource, key: str, summary: Summary, bar) -> None:
        cp = None if self.restart else self.store.load(key)
        size = source.size(key)
        if cp is not None and cp.size is not None and size is not None and size < cp.size:
            self.log(f"{key} is smaller than when it was ingested; reading it again from the start")
            cp = None
        if cp is not None and cp.done:
            summary.inputs_already_done += 1
            return
        recovered: set[str] = set()
        if cp is None:
            cp = Checkpoint(input=key, size=size)
        else:
            recovered = set(cp.recovered)
            if cp.watermarks:
                recovered |= self.watch.published_since(cp.watermarks, key)
        cp.recovered = sorted(recovered)
        cp.watermarks = self.watch.watermarks()
        self.store.save(cp)
        self._snapshot = (summary.published, dict(summary.defects))
        publisher = self._publisher_now()
        headers = {INPUT_HEADER: key}
        pending, last_flush = 0, time.monotonic()
        position = cp.position
        for item in source.read(key, cp.position):
            summary.bytes_in += item.n_bytes
            position = item.position
            doc = item.doc
            if doc is None:
                summary.skipped[item.kind] += 1
            elif doc.id in recovered:
                recovered.discard(doc.id)
                summary.already_published += 1
            else:
                publisher.publish(doc, key=doc.id, headers=headers)
                summary.published += 1
                PUBLISHED.labels(doc.source).inc()
                PUBLISHED_BYTES.labels(doc.source).inc(item.n_bytes)
                cp.published += 1
                pending += 1
                if doc.defect:
                    summary.defects[doc.defect] += 1
                if bar is not None:
                    bar.update(1)
            if pending >= self.flush_every or (pending and time.monotonic() - last_flush >= self.flush_secs):
                self._checkpoint(publisher, cp, position, recovered, summary)
                pending, last_flush = 0, time.monotonic()
        cp.done = True
        self._checkpoint(publisher, cp, position, set(), summary)

    def _checkpoint(self, publisher, cp: Checkpoint, position: Any, recovered: set[str], summary: Summary) -> None:
        stats = publisher.flush()
        summary.bytes_out = getattr(stats, "bytes", summary.bytes_out)
        cp.position = position
        cp.recovered = sorted(recovered)
        cp.watermarks = self.watch.watermarks()
        self.store.save(cp)
        self._snapshot = (summary.published, dict(summary.defects))


def ensure_raw_topic(bootstrap: str, topic: str, partitions: int = 4, replication: int | None = None,
                     timeout: float = 30.0) -> str:
    """Create the raw topic with its canonical spec (``schemas.Topics``) if it is missing;
    returns 'created' or 'exists'. ``replication`` None: the cluster's default."""
    from iolayer.topics_admin import TopicPlan, ensure_topics
    from schemas import Topics

    spec = Topics(partitions=partitions, raw_name=topic).specs()[0]
    plan = TopicPlan(topic, spec.partitions, dict(spec.config))
    return ensure_topics(bootstrap, [plan], replication=replication, timeout=timeout)[topic]
