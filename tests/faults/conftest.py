"""A three-broker cluster (replication 3, min in-sync 2) for the fault tests, on its own ports."""
from __future__ import annotations

import os
import shutil

import pytest

from foundry.broker import KafkaCluster

FAULT_PORT = int(os.environ.get("FOUNDRY_TEST_FAULT_PORT", "19960"))


@pytest.fixture(scope="session")
def cluster3(tmp_path_factory):
    if shutil.which("java") is None or shutil.which("mvn") is None:
        pytest.skip("java and mvn are needed for a real broker")
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka3"), brokers=3, port=FAULT_PORT, heap="384m")
    cluster.up(timeout=240)
    yield cluster
    cluster.down()
