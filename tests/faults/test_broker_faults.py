"""A broker killed mid-run and brought back, and the whole cluster stopped and restarted
under a running factory: the run finishes and `foundry audit` is clean."""
from __future__ import annotations

import random
import signal
import time

import pytest

from tests.faults.factory_driver import Factory, fault_rounds, full_suite_only, pause, wait_for

pytestmark = pytest.mark.kafka


def test_a_broker_killed_mid_run_and_brought_back(cluster3, tmp_path, unique_name):
    rng = random.Random(11)
    factory = Factory(tmp_path, cluster3.bootstrap, unique_name, n_docs=0, rate=40)
    factory.up()
    try:
        pause(rng, 8, 12)
        for _ in range(max(1, fault_rounds() // 3)):
            victim = rng.choice([n.node_id for n in cluster3.broker_nodes])
            cluster3.kill_node(victim, signal.SIGKILL)
            pause(rng, 5, 10)  # the factory runs on two brokers (min in-sync 2)
            cluster3.start_node(victim, timeout=180)
            pause(rng, 3, 6)
    finally:
        cluster3.up(timeout=240)  # whatever happened, the next test gets the whole cluster
        summary = factory.down_and_audit()
    print(f"broker kills: {summary['docs_in']} documents in, audit clean")


@full_suite_only
def test_the_whole_cluster_stopped_and_restarted(cluster3, tmp_path, unique_name):
    rng = random.Random(12)
    factory = Factory(tmp_path, cluster3.bootstrap, unique_name, n_docs=0, rate=40)
    factory.up()
    try:
        pause(rng, 8, 12)
        cluster3.down()
        time.sleep(rng.uniform(3, 8))  # every client sees the brokers gone
        cluster3.up(timeout=240)
        wait_for(lambda: all(p["state"] == "running" for p in factory.ps()["processes"]), 180,
                 "every process running again")
        pause(rng, 8, 12)
    finally:
        cluster3.up(timeout=240)
        summary = factory.down_and_audit()
    print(f"cluster restart: {summary['docs_in']} documents in, restarts {summary['restarts']}, audit clean")
