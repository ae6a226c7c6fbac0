"""The pipeline against a broker whose client listener requires SASL/PLAIN.

Every client (the sources' and sinks' confluent-kafka clients, the Faust/aiokafka
worker, the audit's reader) must take its credentials from the FOUNDRY_KAFKA_*
environment alone; a client without them, or with a wrong password, is refused.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from foundry import broker_config as bc
from foundry.audit import audit_output
from foundry.broker import KafkaCluster
from foundry.run import run_pipeline
from iolayer.kafka_config import KafkaSecurity, confluent_config
from iolayer.publisher import BrokerUnavailable, check_broker
from tests.foundry.pipeline_helpers import assert_exactly_once, small_recipe, write_corpus

USERS = {"alice": "alice-s3cret", "bob": "bob-s3cret"}
SASL_PORT = int(os.environ.get("FOUNDRY_TEST_SASL_PORT", "19950"))
needs_java = pytest.mark.skipif(shutil.which("java") is None or shutil.which("mvn") is None,
                                reason="java and mvn are needed for a real broker")


# ------------------------------------------------------------------ config (no Java)
def test_sasl_listener_config_names_the_users_and_refuses_unquotable_values():
    nodes = bc.layout(3, 29092)
    props = {n.node_id: bc.server_properties(n, nodes, Path("/h"), USERS, "inter-pw") for n in nodes}
    broker = props[1]
    assert broker["listeners"] == "SASL_PLAINTEXT://127.0.0.1:29092"
    assert broker["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.1:29092"
    assert broker["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    assert broker["sasl.enabled.mechanisms"] == "PLAIN"
    jaas = broker["listener.name.sasl_plaintext.plain.sasl.jaas.config"]
    assert 'user_alice="alice-s3cret"' in jaas and 'user_bob="bob-s3cret"' in jaas
    assert f'username="{bc.INTER_BROKER_USER}"' in jaas and jaas.endswith(";")
    # The controller keeps its own PLAINTEXT listener and no client users.
    assert props[0]["listeners"] == "CONTROLLER://127.0.0.1:29102"
    assert not any("jaas" in k for k in props[0])
    # A plaintext cluster is unchanged.
    assert "sasl.enabled.mechanisms" not in bc.server_properties(nodes[1], nodes, Path("/h"))
    for bad in ({"al ice": "pw"}, {"alice": 'p"w'}, {"alice": "p;w"}, {"alice": ""}):
        with pytest.raises(ValueError):
            bc.server_properties(nodes[1], nodes, Path("/h"), bad, "inter-pw")
    with pytest.raises(ValueError):
        bc.server_properties(nodes[1], nodes, Path("/h"), USERS, None)


# ------------------------------------------------------------------ real broker
@pytest.fixture(scope="module")
def sasl_bootstrap(tmp_path_factory):
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka-sasl"), port=SASL_PORT, heap="512m", sasl_users=USERS)
    bootstrap = cluster.up(timeout=240)
    yield bootstrap
    cluster.down()


def _as(monkeypatch, user: str | None, password: str | None = None) -> None:
    for name in ("SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD"):
        monkeypatch.delenv(f"FOUNDRY_KAFKA_{name}", raising=False)
    if user is not None:
        monkeypatch.setenv("FOUNDRY_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        monkeypatch.setenv("FOUNDRY_KAFKA_SASL_MECHANISM", "PLAIN")
        monkeypatch.setenv("FOUNDRY_KAFKA_SASL_USERNAME", user)
        monkeypatch.setenv("FOUNDRY_KAFKA_SASL_PASSWORD", password or USERS[user])


@needs_java
@pytest.mark.kafka
def test_pipeline_runs_with_credentials_from_the_environment_only(sasl_bootstrap, tmp_path, monkeypatch,
                                                                  unique_name):
    _as(monkeypatch, "alice")  # inherited by the worker (Faust/aiokafka) and sink processes
    corpus = tmp_path / "corpus.jsonl.gz"
    expected = write_corpus(corpus, 300, dup_every=10)
    raw = f"{unique_name}.raw"
    summary = run_pipeline(sasl_bootstrap, small_recipe(), corpus=[str(corpus)], namespace=unique_name,
                           raw_topic=raw, out_root=tmp_path / "out", timeout=300)
    assert summary.docs_in == len(expected)
    assert summary.docs_written > 0 and summary.duplicates > 0
    assert_exactly_once(Path(summary.out_dir), expected)
    report = audit_output(summary.out_dir, bootstrap=sasl_bootstrap, raw_topic=raw)
    assert report.ok, report.text()


@needs_java
@pytest.mark.kafka
def test_clients_without_or_with_wrong_credentials_are_refused(sasl_bootstrap, monkeypatch):
    _as(monkeypatch, None)
    with pytest.raises(BrokerUnavailable):
        check_broker(sasl_bootstrap, timeout=5, quiet=True)
    wrong = KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="alice",
                          sasl_password="not-her-password")
    errors: list[KafkaError] = []  # librdkafka reports the refusal through error_cb
    admin = AdminClient(confluent_config(sasl_bootstrap, {"log_level": 0, "error_cb": errors.append},
                                         security=wrong))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=10)
    admin.poll(1.0)  # error callbacks are served from poll
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    # The same user with the right password is let in.
    _as(monkeypatch, "bob")
    check_broker(sasl_bootstrap, timeout=10, quiet=True)
