"""Fixtures of the sources tests.

* ``shared_data``: ``../shared/data`` beside the repository (or $FOUNDRY_SHARED_DATA).
  Missing: the test is skipped on a developer machine and FAILS under CI.
* ``kafka``: the session's broker. It is the project's ``kafka_bootstrap`` fixture
  when tests/conftest.py provides one; otherwise a broker of our own on a free
  port in 39100-39199, stopped at the end of the session.
* ``site_factory``: starts generated test web sites (127.0.0.1 only) and stops them.
* ``topic``: a fresh raw topic name per test, so tests never see each other's data.
"""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from .sitegen import SiteConfig, TestSite

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def shared_data_dir() -> Path:
    env = os.environ.get("FOUNDRY_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if not (d / "warc").is_dir() or not (d / "html_pages.jsonl.gz").is_file():
        msg = f"the shared data folder {d} (warc/, html_pages.jsonl.gz) is missing"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return d


def _free_pair(lo: int = 39100, hi: int = 39199) -> int:
    for port in range(lo, hi, 2):
        ok = True
        for p in (port, port + 1):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free port pair in 39100-39199")


@pytest.fixture(scope="session")
def kafka(request, tmp_path_factory) -> str:
    try:
        return request.getfixturevalue("kafka_bootstrap")
    except pytest.FixtureLookupError:
        pass
    from foundry.broker import KafkaCluster

    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka"), port=_free_pair())
    bootstrap = cluster.up(timeout=180)
    request.addfinalizer(cluster.down)
    return bootstrap


@pytest.fixture
def topic() -> str:
    return f"test.sources.raw.{uuid.uuid4().hex[:10]}"


@pytest.fixture
def site_factory():
    sites: list[TestSite] = []

    def make(**kw) -> TestSite:
        site = TestSite(SiteConfig(**kw)).start()
        sites.append(site)
        return site

    yield make
    for s in sites:
        s.stop()
