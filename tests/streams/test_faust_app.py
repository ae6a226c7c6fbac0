"""The one Faust app factory: the shared settings, the caller's overrides and the cluster
credentials from the environment reach the app (nothing connects here)."""
from __future__ import annotations

from streams.faust_app import make_faust_app


def test_shared_settings_and_overrides(tmp_path):
    app = make_faust_app("foundry-test-app", "127.0.0.1:19999", datadir=str(tmp_path), partitions=3,
                         broker_commit_every=7, table_cleanup_interval=99.0)
    conf = app.conf
    assert conf.topic_partitions == 3 and conf.topic_allow_declare is False and conf.web_enabled is False
    assert conf.processing_guarantee.value == "at_least_once" and conf.broker_session_timeout == 10.0
    assert conf.broker_commit_every == 7 and conf.table_cleanup_interval == 99.0
    assert [str(u) for u in conf.broker] == ["kafka://127.0.0.1:19999"]
    assert conf.broker_credentials is None  # plaintext unless the environment says otherwise



def test_the_log_quieting_task_raises_the_client_loggers(tmp_path):
    import asyncio
    import logging

    app = make_faust_app("foundry-test-quiet", "127.0.0.1:19999", datadir=str(tmp_path), partitions=1)
    (task,) = [t for t in app._app_tasks if t.__name__ == "quiet_hot_path_logs"]
    for name in ("faust", "aiokafka", "mode"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    asyncio.run(task())
    want = max(logging.getLogger().level, logging.INFO)
    assert all(logging.getLogger(n).level == want for n in ("faust", "aiokafka", "mode"))


def test_credentials_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FOUNDRY_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("FOUNDRY_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("FOUNDRY_KAFKA_SASL_USERNAME", "worker")
    monkeypatch.setenv("FOUNDRY_KAFKA_SASL_PASSWORD", "secret")
    app = make_faust_app("foundry-test-sasl", "127.0.0.1:19999", datadir=str(tmp_path), partitions=1)
    creds = app.conf.broker_credentials
    assert creds.username == "worker" and creds.mechanism.value == "SCRAM-SHA-256"
