"""Where the pruning stage gets the current BudgetUpdate from.

A provider has one method, ``current() -> BudgetUpdate | None``. Three kinds:

* :class:`StaticBudgetProvider` - in memory (tests, the in-process benchmark); ``set()`` replaces it.
* :class:`FileBudgetProvider` - a JSON-lines file of BudgetUpdates (offline runs, and replays: with
  ``pin_version`` a replay applies exactly the budget version the live run recorded).
* :class:`KafkaBudgetReader` - a background confluent-kafka consumer of the namespace's compacted
  budgets topic that keeps the newest update of its key (the namespace). It reads the topic from
  the beginning (compacted: about one record per key), so a restarted worker has the current
  budgets as soon as it has caught up; ``wait_ready`` waits for that.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Protocol

from schemas import BudgetUpdate, SchemaError, Topics
from iolayer.kafka_config import confluent_config

log = logging.getLogger(__name__)


class BudgetProvider(Protocol):
    def current(self) -> BudgetUpdate | None: ...


class StaticBudgetProvider:
    def __init__(self, update: BudgetUpdate | None = None):
        self._update = update

    def set(self, update: BudgetUpdate | None) -> None:
        self._update = update

    def current(self) -> BudgetUpdate | None:
        return self._update

    def close(self) -> None:
        pass


class FileBudgetProvider:
    """The newest update in a JSON-lines file (re-read when the file changes), or the pinned version."""

    def __init__(self, path: str | Path, pin_version: int | None = None):
        self.path = Path(path)
        self.pin_version = pin_version
        self._mtime: float | None = None
        self._update: BudgetUpdate | None = None

    def current(self) -> BudgetUpdate | None:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return self._update
        if mtime != self._mtime:
            self._mtime = mtime
            best: BudgetUpdate | None = None
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    upd = BudgetUpdate.decode(line.encode("utf-8"))
                except SchemaError as exc:
                    log.warning("%s: skipped a line: %s", self.path, exc)
                    continue
                if self.pin_version is not None:
                    if upd.budget_version == self.pin_version:
                        best = upd
                elif best is None or upd.budget_version >= best.budget_version:
                    best = upd
            if self.pin_version is not None and best is None:
                raise ValueError(f"{self.path} has no budget version {self.pin_version}")
            self._update = best
        return self._update

    def close(self) -> None:
        pass


def append_update(path: str | Path, update: BudgetUpdate) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(update.encode().decode("utf-8") + "\n")


class KafkaBudgetReader:
    """Tails ``Topics(namespace).budgets`` on a daemon thread; ``current()`` is the newest update of ``key``."""

    def __init__(self, bootstrap: str, namespace: str = "live", *, key: str | None = None,
                 poll_s: float = 0.5, start: bool = True):
        self.bootstrap = bootstrap
        self.topic = Topics(namespace).budgets
        self.key = (key if key is not None else namespace).encode("utf-8")
        self.poll_s = poll_s
        self._update: BudgetUpdate | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.errors = 0
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

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

        consumer = None
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
                        pending = set(parts)
                    for msg in consumer.consume(num_messages=100, timeout=self.poll_s):
                        err = msg.error()
                        if err is not None:
                            if err.code() == KafkaError._PARTITION_EOF:
                                pending.discard(msg.partition())
                                if not pending:
                                    self._ready.set()
                            else:
                                self.errors += 1
                            continue
                        if msg.key() != self.key or msg.value() is None:
                            continue
                        try:
                            upd = BudgetUpdate.decode(msg.value())
                        except SchemaError as exc:
                            self.errors += 1
                            log.warning("budgets topic %s: skipped a record: %s", self.topic, exc)
                            continue
                        with self._lock:
                            if self._update is None or upd.budget_version >= self._update.budget_version:
                                self._update = upd
                except Exception as exc:  # noqa: BLE001 - keep the last budgets, try again
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

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the topic has been read up to its end once (True), or ``timeout`` seconds."""
        return self._ready.wait(timeout)

    def current(self) -> BudgetUpdate | None:
        with self._lock:
            return self._update

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def dumps(update: BudgetUpdate | None) -> str:
    return json.dumps(update.to_dict() if update else None, indent=2, sort_keys=True)
