"""compose/docker-compose.yml is a well-formed description of the multi-host deployment."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml"
KAFKA = ["kafka-1", "kafka-2", "kafka-3"]
APPS = {"foundry-worker": "worker", "shard-writer": "shard-writer", "ledger": "ledger", "trainer": "train"}


def _services() -> dict:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc["services"]


def test_every_service_has_image_or_build_and_command():
    services = _services()
    for name in KAFKA + list(APPS):
        assert name in services, name
        svc = services[name]
        assert svc.get("image") or svc.get("build"), name
    for name, sub in APPS.items():
        cmd = services[name].get("command")
        assert cmd, name
        words = cmd.split() if isinstance(cmd, str) else list(cmd)
        assert words[0] == "foundry" and words[1] == sub, (name, words)
    worker = services["foundry-worker"]["command"]
    assert "/recipes/default.yaml" in (worker if isinstance(worker, str) else " ".join(worker))


def test_kafka_brokers_form_one_kraft_quorum():
    services = _services()
    voters = set()
    for i, name in enumerate(KAFKA, start=1):
        svc = services[name]
        assert svc["image"].startswith("apache/kafka:")
        env = svc["environment"]
        assert str(env["KAFKA_NODE_ID"]) == str(i)
        assert str(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == "3"
        assert str(env["KAFKA_MIN_INSYNC_REPLICAS"]) == "2"
        assert str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "3"
        voters.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        assert env["CLUSTER_ID"]
    assert len(voters) == 1  # the same voters list everywhere


def test_app_services_build_from_the_project_dockerfile():
    services = _services()
    dockerfile = COMPOSE.parent / "Dockerfile"
    assert dockerfile.exists()
    assert "python:3.11-slim" in dockerfile.read_text()
    for name in APPS:
        env = services[name].get("environment", {})
        assert "kafka-1:" in str(env.get("FOUNDRY_BOOTSTRAP", "")), name
