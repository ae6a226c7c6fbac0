"""Where the pruning stage gets its BudgetUpdates from.

A provider has ``current() -> BudgetUpdate | None`` (the newest) and ``at(t)``: the update a
document ingested at time ``t`` (epoch seconds; None: not known) is judged under. Three kinds:

* :class:`StaticBudgetProvider` - in memory (tests, the in-process benchmark); ``set()`` replaces it.
* :class:`FileBudgetProvider` - a JSON-lines file of BudgetUpdates (offline runs, and replays: with
  ``pin_version`` a replay applies exactly the budget version the live run recorded).
* :class:`KafkaBudgetReader` - a background confluent-kafka consumer of the namespace's budgets
  topic that keeps the history of its key's versions (:class:`BudgetHistory`).

Why ``at(t)`` and not the newest: a worker that crashed gets its last batches again, and the
budgets may have changed in between. The verdict must not change with them, so it is a function
of the document and of its ingest time: the newest update *effective* at that time. The budget
agent sets ``effective_at`` ``LEAD_S`` ahead of the time it publishes; the reader answers for a
time ``t`` only once it has read the topic to an end it queried at ``t - GUARD_S`` or later, so
every update effective at ``t`` is in its view whichever process asks, and whenever
(docs/exactly-once.md).
"""
from __future__ import annotations

import bisect
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from schemas import BudgetUpdate, SchemaError, Topics
from iolayer.kafka_config import confluent_config

log = logging.getLogger(__name__)

# The agent publishes an update LEAD_S before it takes effect; a reader trusts its view for GUARD_S
# past the moment it last saw the topic's end. LEAD_S - GUARD_S is what delivery and clock skew
# between hosts may take (the agent warns when a delivery took longer).
LEAD_S = 5.0
GUARD_S = 2.0


class BudgetProvider(Protocol):
    def current(self) -> BudgetUpdate | None: ...

    def at(self, t: float | None) -> BudgetUpdate | None: ...


class StaticBudgetProvider:
    def __init__(self, update: BudgetUpdate | None = None):
        self._update = update

    def set(self, update: BudgetUpdate | None) -> None:
        self._update = update

    def current(self) -> BudgetUpdate | None:
        return self._update

    def at(self, t: float | None) -> BudgetUpdate | None:  # noqa: ARG002 - one update for every time
        return self._update

    def close(self) -> None:
        pass


class BudgetHistory:
    """The versions of one budgets key: each version's effective time, and the updates themselves
    for the newest ``keep`` versions (older ones come back through ``fetch``, by where they were
    read, when a document that old arrives: memory stays bounded however long the run).

    A version's effective time is the largest ``effective_at`` (or, for a v1 update, the time
    it was published) of it and of every lower version, so effective times never decrease with
    the version and :meth:`at` is a bisection."""

    def __init__(self, keep: int = 256, fetch: Callable[[object], BudgetUpdate | None] | None = None):
        self.keep = keep
        self.fetch = fetch
        self._versions: list[int] = []
        self._own: list[float] = []  # each version's own effective time
        self._eff: list[float] = []  # running maximum of _own: the effective time used
        self._where: dict[int, object] = {}
        self._full: OrderedDict[int, BudgetUpdate] = OrderedDict()

    def __len__(self) -> int:
        return len(self._versions)

    def add(self, update: BudgetUpdate, published_at: float = float("-inf"), where: object = None) -> bool:
        """Record ``update`` (False when its version is known already; ``where`` is then kept if new)."""
        v = update.budget_version
        own = float(update.effective_at) if update.effective_at is not None else float(published_at)
        i = bisect.bisect_left(self._versions, v)
        if i < len(self._versions) and self._versions[i] == v:
            if where is not None:
                self._where[v] = where
            return False
        self._versions.insert(i, v)
        self._own.insert(i, own)
        if i == len(self._eff):
            self._eff.append(max(own, self._eff[-1]) if self._eff else own)
        else:  # an older version arrived late: recompute the running maximum
            self._eff = []
            for x in self._own:
                self._eff.append(max(x, self._eff[-1]) if self._eff else x)
        if where is not None:
            self._where[v] = where
        self._full[v] = update
        self._full.move_to_end(v)
        while len(self._full) > self.keep:
            old = min(self._full)
            if self.fetch is None or old not in self._where:
                break  # nothing could bring it back: keep it
            del self._full[old]
        return True

    def newest(self) -> BudgetUpdate | None:
        return self.get(self._versions[-1]) if self._versions else None

    def effective(self, version: int) -> float:
        return self._eff[bisect.bisect_left(self._versions, version)]

    def version_at(self, t: float) -> int | None:
        i = bisect.bisect_right(self._eff, t)
        return self._versions[i - 1] if i else None

    def at(self, t: float | None) -> BudgetUpdate | None:
        """The newest update effective at ``t`` (None: before the first; ``t`` None: the newest)."""
        if t is None:
            return self.newest()
        v = self.version_at(t)
        return None if v is None else self.get(v)

    def get(self, version: int) -> BudgetUpdate:
        upd = self._full.get(version)
        if upd is None:
            upd = self.fetch(self._where[version]) if self.fetch is not None else None
            if upd is None or upd.budget_version != version:
                raise LookupError(f"budget version {version} can no longer be read")
            self._full[version] = upd  # an old one back: evicted again by the next add
        return upd


class FileBudgetProvider:
    """The updates of a JSON-lines file (re-read when the file changes), or the pinned version.

    ``at(t)`` is the newest update effective at ``t`` (a line without ``effective_at`` counts from
    the beginning), the pinned version for every document when there is one."""

    def __init__(self, path: str | Path, pin_version: int | None = None):
        self.path = Path(path)
        self.pin_version = pin_version
        self._mtime: float | None = None
        self._history = BudgetHistory(keep=1 << 30)
        self._pinned: BudgetUpdate | None = None

    def _refresh(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime
        history = BudgetHistory(keep=1 << 30)
        pinned: BudgetUpdate | None = None
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                upd = BudgetUpdate.decode(line.encode("utf-8"))
            except SchemaError as exc:
                log.warning("%s: skipped a line: %s", self.path, exc)
                continue
            history.add(upd)
            if upd.budget_version == self.pin_version:
                pinned = upd
        if self.pin_version is not None and pinned is None:
            raise ValueError(f"{self.path} has no budget version {self.pin_version}")
        self._history, self._pinned = history, pinned

    def current(self) -> BudgetUpdate | None:
        self._refresh()
        return self._pinned if self.pin_version is not None else self._history.newest()

    def at(self, t: float | None) -> BudgetUpdate | None:
        self._refresh()
        return self._pinned if self.pin_version is not None else self._history.at(t)

    def close(self) -> None:
        pass


def append_update(path: str | Path, update: BudgetUpdate) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(update.encode().decode("utf-8") + "\n")


class KafkaBudgetReader:
    """Tails ``Topics(namespace).budgets`` on a daemon thread and keeps the history of ``key``'s
    versions (the namespace's: records under ``key`` and the agent's history keys ``key@v<n>``,
    which compaction does not fold into one). ``current()`` is the newest; ``at(t)`` waits until
    the view covers ``t`` (see the module docstring), then answers from the history."""

    def __init__(self, bootstrap: str, namespace: str = "live", *, key: str | None = None,
                 poll_s: float = 0.25, start: bool = True, keep: int = 256, guard_s: float = GUARD_S):
        self.bootstrap = bootstrap
        self.topic = Topics(namespace).budgets
        self.key = (key if key is not None else namespace).encode("utf-8")
        self._history_prefix = self.key + b"@"
        self.poll_s = poll_s
        self.guard_s = guard_s
        self.history = BudgetHistory(keep=keep, fetch=self._fetch)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.complete_until = float("-inf")  # every update effective up to this time is in the history
        self.errors = 0
        self.waits = 0  # at() calls that had to wait for the view
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="budget-reader", daemon=True)
            self._thread.start()

    def _consumer(self):
        from confluent_kafka import Consumer

        return Consumer(confluent_config(self.bootstrap, {
            "group.id": f"foundry-budget-reader-{self.topic}",  # required by the client; nothing is committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }))

    def _take(self, msg) -> None:
        key = msg.key()
        if msg.value() is None or not (key == self.key or (key or b"").startswith(self._history_prefix)):
            return
        try:
            upd = BudgetUpdate.decode(msg.value())
        except SchemaError as exc:
            self.errors += 1
            log.warning("budgets topic %s: skipped a record: %s", self.topic, exc)
            return
        ts_type, ts_ms = msg.timestamp()
        published = ts_ms / 1000.0 if ts_type and ts_ms >= 0 else float("-inf")
        # The history key survives compaction; a record under the plain key may not.
        where = (msg.partition(), msg.offset()) if key != self.key else None
        with self._cond:
            self.history.add(upd, published, where)

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

        consumer = None
        parts: list[int] = []
        next_off: dict[int, int] = {}
        try:
            while not self._stop.is_set():
                try:
                    if consumer is None:
                        consumer = self._consumer()
                        meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
                        if meta is None or meta.error is not None or not meta.partitions:
                            consumer.close()
                            consumer = None
                            time.sleep(self.poll_s)
                            continue
                        parts = sorted(meta.partitions)
                        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
                        next_off = {p: 0 for p in parts}
                    # The end as of now: once read up to it, every update appended before this
                    # moment is in the history.
                    asked = time.time()
                    ends = {p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10,
                                                              cached=False)[1] for p in parts}
                    give_up = time.monotonic() + 10
                    while any(next_off[p] < ends[p] for p in parts) and not self._stop.is_set():
                        if time.monotonic() > give_up:
                            raise TimeoutError(f"{self.topic}: the topic's end did not arrive")
                        for msg in consumer.consume(num_messages=500, timeout=self.poll_s):
                            err = msg.error()
                            if err is not None:
                                if err.code() == KafkaError._PARTITION_EOF:
                                    next_off[msg.partition()] = max(next_off[msg.partition()], msg.offset())
                                else:
                                    self.errors += 1
                                continue
                            next_off[msg.partition()] = max(next_off[msg.partition()], msg.offset() + 1)
                            self._take(msg)
                    with self._cond:
                        self.complete_until = max(self.complete_until, asked + self.guard_s)
                        self._cond.notify_all()
                    self._ready.set()
                    self._stop.wait(self.poll_s)
                except Exception as exc:  # noqa: BLE001 - keep the history, try again
                    self.errors += 1
                    log.warning("budget reader: %s", exc)
                    if consumer is not None:
                        try:
                            consumer.close()
                        except Exception:  # noqa: BLE001
                            pass
                        consumer = None
                    time.sleep(self.poll_s)
        finally:
            if consumer is not None:
                consumer.close()

    def _fetch(self, where) -> BudgetUpdate | None:
        """An evicted version, read back from where it was read (its history key's record)."""
        from iolayer.ranges import range_consumer, read_range

        partition, offset = where
        c = range_consumer(self.bootstrap, "foundry-budget-history")
        try:
            for m in read_range(c, self.topic, partition, offset, offset + 1):
                return BudgetUpdate.decode(m.value())
        finally:
            c.close()
        return None

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the topic has been read up to its end once (True), or ``timeout`` seconds."""
        return self._ready.wait(timeout)

    def current(self) -> BudgetUpdate | None:
        with self._cond:
            return self.history.newest()

    def wait_covers(self, t: float, timeout: float | None = None) -> bool:
        """Wait until every update effective at ``t`` is in the history (False after ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self.complete_until >= t:
                return True
            self.waits += 1
            while self.complete_until < t:
                left = 30.0 if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    return False
                if not self._cond.wait(min(left, 30.0)) and deadline is None:
                    log.warning("budget reader: waiting for %s to be read up to %.1f (read to %.1f; errors %d)",
                                self.topic, t, self.complete_until, self.errors)
            return True

    def at(self, t: float | None) -> BudgetUpdate | None:
        """The update a document ingested at ``t`` is judged under; waits, as long as it takes, for
        the view to cover ``t`` (a verdict is never made on a partial view). ``t`` None: the newest."""
        if t is None:
            return self.current()
        self.wait_covers(t)
        with self._cond:
            return self.history.at(t)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def dumps(update: BudgetUpdate | None) -> str:
    return json.dumps(update.to_dict() if update else None, indent=2, sort_keys=True)


def budget_messages(namespace: str, update: BudgetUpdate) -> list[tuple[bytes, bytes]]:
    """The (key, value) messages that publish ``update`` on the namespace's budgets topic: under
    a history key ``<namespace>@v<version>`` that compaction keeps (a redelivered document may
    need an older version than the newest), then under the namespace, the newest for every reader."""
    value = update.encode()
    ns = namespace.encode("utf-8")
    return [(ns + f"@v{update.budget_version}".encode(), value), (ns, value)]
