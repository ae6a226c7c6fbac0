"""kill -9 of each process kind of a running factory at random points, round after round: the
supervisor restarts each, `foundry down` drains, and `foundry audit` finds every raw document
in exactly one shard or one ledger row."""
from __future__ import annotations

import random

import pytest

from tests.faults.factory_driver import Factory, fault_rounds, pause

pytestmark = pytest.mark.kafka

KINDS = ["worker-0", "shard-writer", "ledger", "source-gen"]


def test_sigkill_each_process_kind_at_random_points(cluster3, tmp_path, unique_name):
    rounds = max(len(KINDS), fault_rounds())
    rng = random.Random(rounds)
    factory = Factory(tmp_path, cluster3.bootstrap, unique_name, n_docs=0, rate=40)
    factory.up()
    killed: list[str] = []
    try:
        pause(rng, 5, 8)
        for i in range(rounds):
            name = KINDS[i] if i < len(KINDS) else rng.choice(KINDS)  # every kind at least once
            factory.kill_and_wait_restart(name)
            killed.append(name)
            pause(rng, 0.5, 4)
    finally:
        summary = factory.down_and_audit()
    restarts = summary["restarts"]
    for name in KINDS:
        assert restarts.get(name, 0) >= killed.count(name), (restarts, killed)
    print(f"{rounds} SIGKILLs ({', '.join(f'{k} x{killed.count(k)}' for k in KINDS)}); "
          f"{summary['docs_in']} documents in, {summary['accounted']} accounted, audit clean")
