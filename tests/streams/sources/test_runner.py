"""The ingest loop without a broker: checkpoints, crash recovery without duplicates,
a broker outage ridden out. The topic is a list; the real-Kafka versions of these
tests are in test_kafka_sources.py."""
from __future__ import annotations

from collections import Counter

import pytest

from schemas import RawDocument
from iolayer.publisher import PublishError
from streams.sources import runner as runner_mod
from streams.sources.progress import INPUT_HEADER, CheckpointStore
from streams.sources.runner import IngestRunner, Item
from streams.sources.synthetic import SyntheticConfig, SyntheticSource


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even except blocks for Exception."""


class FakeTopic:
    def __init__(self):
        self.log: list[tuple[str, dict]] = []  # (key, headers), offsets = positions


class FakeWatch:
    def __init__(self, topic: FakeTopic):
        self.topic = topic

    def watermarks(self):
        return {"0": len(self.topic.log)}

    def published_since(self, watermarks, key):
        start = watermarks.get("0", 0)
        return {k for k, h in self.topic.log[start:] if h.get(INPUT_HEADER) == key}


class FakePublisher:
    """Messages reach the topic at flush, or (some of them) when the process 'dies'."""

    def __init__(self, topic: FakeTopic, *, die_after: int | None = None, deliver_on_death: float = 0.5,
                 fail_flush_once: bool = False):
        self.topic, self.pending, self.sent = topic, [], 0
        self.die_after, self.deliver_on_death = die_after, deliver_on_death
        self.fail_flush_once = fail_flush_once

    def publish(self, record, key=None, headers=None):
        self.pending.append((key, dict(headers or {})))
        self.sent += 1
        if self.die_after is not None and self.sent >= self.die_after:
            n = int(len(self.pending) * self.deliver_on_death)  # in flight: some made it to the broker
            self.topic.log.extend(self.pending[:n])
            raise Killed()

    def flush(self):
        if self.fail_flush_once:
            self.fail_flush_once = False
            self.topic.log.extend(self.pending[: len(self.pending) // 3])
            self.pending.clear()
            raise PublishError("3 messages failed: broker gone")
        self.topic.log.extend(self.pending)
        self.pending.clear()


def _runner(topic, store, pub_factory, **kw):
    return IngestRunner(pub_factory, FakeWatch(topic), store, progress=False, flush_every=kw.pop("flush_every", 25),
                        flush_secs=60, log=lambda m: None, **kw)


def _source(n=400):
    return SyntheticSource(SyntheticConfig(n_docs=n, seed=1, near_dup_rate=0.05), source="syn")


def test_run_then_rerun_publishes_nothing_twice(tmp_path):
    topic, store = FakeTopic(), CheckpointStore(tmp_path)
    s1 = _runner(topic, store, lambda: FakePublisher(topic)).run(_source(), "generate")
    assert s1.published == 400 and len(topic.log) == 400
    s2 = _runner(topic, store, lambda: FakePublisher(topic)).run(_source(), "generate")
    assert s2.published == 0 and s2.inputs_already_done == 1 and len(topic.log) == 400
    s3 = _runner(topic, store, lambda: FakePublisher(topic), restart=True).run(_source(), "generate")
    assert s3.published == 400  # --restart: read again on purpose


@pytest.mark.parametrize("deliver", [0.0, 0.5, 1.0])
def test_killed_twice_then_resumed_exactly_once(tmp_path, deliver):
    topic, store = FakeTopic(), CheckpointStore(tmp_path)
    with pytest.raises(Killed):
        _runner(topic, store, lambda: FakePublisher(topic, die_after=137, deliver_on_death=deliver)).run(
            _source(), "generate")
    with pytest.raises(Killed):  # dies again before its first checkpoint: the recovered ids must survive it
        _runner(topic, store, lambda: FakePublisher(topic, die_after=10, deliver_on_death=deliver)).run(
            _source(), "generate")
    s = _runner(topic, store, lambda: FakePublisher(topic)).run(_source(), "generate")
    counts = Counter(k for k, _ in topic.log)
    assert len(counts) == 400 and max(counts.values()) == 1
    if deliver > 0:  # what the dead processes got delivered is recognised and not sent again
        assert s.already_published > 0


def test_broker_outage_resumes_from_checkpoint(tmp_path, monkeypatch):
    topic, store = FakeTopic(), CheckpointStore(tmp_path)
    waited = []
    monkeypatch.setattr(runner_mod, "wait_for_broker", lambda b, s, log=None: waited.append(b))
    pubs = iter([FakePublisher(topic, fail_flush_once=True), FakePublisher(topic)])
    s = _runner(topic, store, lambda: next(pubs), broker_retry_s=5, bootstrap="b:1").run(_source(), "generate")
    counts = Counter(k for k, _ in topic.log)
    assert waited == ["b:1"] and s.retries == 1
    assert len(counts) == 400 and max(counts.values()) == 1 and s.already_published > 0
    assert s.published + s.already_published == 400  # the summary counts each document once


def test_non_documents_are_counted(tmp_path):
    class Src:
        name = "x"

        def inputs(self):
            return ["k"]

        def size(self, key):
            return None

        def read(self, key, pos):
            start = (pos or {}).get("i", 0)
            for i in range(start, 10):
                doc = None if i % 2 else RawDocument(id=f"d{i}", text="t", source="x")
                yield Item(doc, {"i": i + 1}, kind="request" if doc is None else "document")

    topic = FakeTopic()
    s = _runner(topic, CheckpointStore(tmp_path), lambda: FakePublisher(topic)).run(Src(), "t")
    assert s.published == 5 and s.skipped == {"request": 5}
    assert any("not documents" in line for line in s.lines())
