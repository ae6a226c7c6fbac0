"""KafkaBudgetReader against the real broker: versions by effective time, a view that covers a time
before it answers for it, and the history read back after a restart and after eviction."""
from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from iolayer.topics_admin import create_topics
from schemas import BudgetUpdate, Topics
from streams.budget.reader import GUARD_S, KafkaBudgetReader, budget_messages

pytestmark = pytest.mark.kafka


def _publish(bootstrap: str, namespace: str, updates: list[BudgetUpdate]) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    for u in updates:
        for key, value in budget_messages(namespace, u):
            p.produce(Topics(namespace).budgets, key=key, value=value)
    p.flush(10)


def _update(v: int, eff: float) -> BudgetUpdate:
    return BudgetUpdate(budget_version=v, window_tokens=10, budgets={"*": 1}, method="t", weights={"*": v / 10},
                        effective_at=eff)


def test_reader_answers_by_effective_time_and_keeps_the_history_across_restarts(kafka_bootstrap, unique_name):
    topics = Topics(namespace=unique_name)
    create_topics(kafka_bootstrap, topics)
    now = time.time()
    _publish(kafka_bootstrap, unique_name, [_update(v, now - 100 + 10 * v) for v in range(1, 6)])
    reader = KafkaBudgetReader(kafka_bootstrap, unique_name, poll_s=0.1, keep=2)
    try:
        assert reader.wait_ready(30)
        assert reader.at(now - 85).budget_version == 1  # evicted (keep=2): read back from its history key
        assert reader.at(now - 55).budget_version == 4
        assert reader.at(now - 200) is None
        # A time just ahead of the view: at() waits until the topic was read at that time minus the guard,
        # and sees an update published meanwhile that is effective by then.
        target = time.time() + GUARD_S + 1.5
        _publish(kafka_bootstrap, unique_name, [_update(6, target - 0.5)])
        got = reader.at(target)
        assert time.time() >= target - GUARD_S - 0.05 and got.budget_version == 6
        assert reader.current().budget_version == 6
    finally:
        reader.close()
    again = KafkaBudgetReader(kafka_bootstrap, unique_name, poll_s=0.1)
    try:
        assert again.wait_ready(30)
        assert [again.at(now - 100 + 10 * v + 1).budget_version for v in range(1, 6)] == [1, 2, 3, 4, 5]
    finally:
        again.close()
