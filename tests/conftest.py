"""Shared fixtures. Integration tests run against a real Kafka broker that this
session starts (and stops) in a temporary folder on its own ports."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data() -> Path:
    """The real corpora beside the project. In CI their absence is a failure, not a skip."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_DATA} is missing; CI needs the shared corpora")
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> str:
    from foundry.broker import KafkaCluster

    port = int(os.environ.get("FOUNDRY_TEST_KAFKA_PORT", "19592"))
    home = tmp_path_factory.mktemp("kafka")
    cluster = KafkaCluster(home, port=port, heap="768m")
    bootstrap = cluster.up(timeout=180)
    yield bootstrap
    cluster.down()


@pytest.fixture
def unique_name() -> str:
    """A fresh name for a test's topics, so tests sharing the broker never meet."""
    return "t" + uuid.uuid4().hex[:10]
