"""The budget agent against the real broker: ValueScores in, BudgetUpdates out on the compacted
budgets topic; after a restart it resumes from its table (budget version and statistics)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from schemas import Topics, ValueScore

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[3]


def _produce(bootstrap: str, topic: str, records: list[ValueScore]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for r in records:
        producer.produce(topic, key=r.doc_id.encode(), value=r.encode())
    assert producer.flush(30) == 0


def _scores(start: int, n: int, seed: int) -> list[ValueScore]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(start, start + n):
        source = "good" if i % 2 else "junk"
        value = rng.normal(1.0, 0.3) if source == "good" else rng.normal(-0.5, 0.3)
        out.append(ValueScore(doc_id=f"doc-{i}", source=source, value=float(value),
                              n_tokens=int(rng.integers(100, 300)), trainer_step=i, model_version="m1",
                              method="test", bucket={"lang": "en"}))
    return out


def _start_agent(bootstrap: str, namespace: str, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "foundry.cli", "budget", "--bootstrap", bootstrap, "--namespace", namespace,
           "--window-tokens", "20000", "--window-s", "2", "--loglevel", "INFO"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_version(reader, at_least: int, proc: subprocess.Popen, log: Path, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        upd = reader.current()
        if upd is not None and upd.budget_version >= at_least:
            return upd
        assert proc.poll() is None, f"the agent exited: {log.read_text()[-3000:]}"
        time.sleep(0.3)
    raise AssertionError(f"no budget version {at_least} within {timeout}s: {log.read_text()[-3000:]}")


def test_agent_publishes_budgets_and_resumes_from_its_table(kafka_bootstrap, unique_name, tmp_path):
    from iolayer.topics_admin import create_topics
    from streams.budget.agent import changelog_topic, topic_partitions
    from streams.budget.reader import KafkaBudgetReader

    topics = Topics(namespace=unique_name)
    create_topics(kafka_bootstrap, topics)
    log = tmp_path / "agent.log"
    reader = KafkaBudgetReader(kafka_bootstrap, unique_name, poll_s=0.2)
    try:
        _produce(kafka_bootstrap, topics.values, _scores(0, 300, seed=1))
        agent = _start_agent(kafka_bootstrap, unique_name, log)
        try:
            first = _wait_version(reader, 1, agent, log)
            _produce(kafka_bootstrap, topics.values, _scores(300, 300, seed=2))
            second = _wait_version(reader, first.budget_version + 1, agent, log)
        finally:
            _stop(agent)
        assert second.weights["good"] == 1.0
        assert second.weights["junk"] < 1.0 and second.budgets["junk"] < second.budgets["good"]
        assert topic_partitions(kafka_bootstrap, changelog_topic(unique_name)) == topics.partitions

        # restart: the next update continues the version and the statistics, it does not start from zero
        _produce(kafka_bootstrap, topics.values, _scores(600, 300, seed=3))
        agent = _start_agent(kafka_bootstrap, unique_name, log)
        try:
            third = _wait_version(reader, second.budget_version + 1, agent, log)
        finally:
            _stop(agent)
        assert third.budget_version == second.budget_version + 1
        # a fresh allocator would give a cold-start update (everything kept, version 1); the resumed one
        # keeps pruning junk at least as hard as before
        assert third.weights["junk"] <= second.weights["junk"] + 1e-9
        assert third.window_tokens > 0
    finally:
        reader.close()
