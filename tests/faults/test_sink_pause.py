"""A sink stopped (SIGSTOP) past its group session timeout while the factory runs, then
resumed: its partitions were taken over meanwhile, and the output stays exactly once."""
from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tests.faults.factory_driver import Factory, full_suite_only, pause

pytestmark = pytest.mark.kafka

SESSION_TIMEOUT_S = 10  # consumers/partitioned_sink.py session.timeout.ms


@pytest.mark.parametrize("sink", ["shard-writer", pytest.param("ledger", marks=full_suite_only)])
def test_sigstop_a_sink_past_its_session_timeout_and_resume(cluster3, tmp_path, unique_name, sink):
    rng = random.Random(13)
    factory = Factory(tmp_path, cluster3.bootstrap, f"{unique_name}{sink[0]}", n_docs=0, rate=40)
    factory.up()
    try:
        pause(rng, 8, 12)
        p = factory.signal(sink, signal.SIGSTOP)
        try:
            time.sleep(SESSION_TIMEOUT_S * 2 + rng.uniform(0, 5))
        finally:
            os.killpg(p["pid"], signal.SIGCONT)
        pause(rng, 8, 12)
        assert factory.process(sink)["pid"] == p["pid"] or factory.process(sink)["restarts"] > p["restarts"]
    finally:
        summary = factory.down_and_audit()
    print(f"SIGSTOP {sink}: {summary['docs_in']} documents in, audit clean")
