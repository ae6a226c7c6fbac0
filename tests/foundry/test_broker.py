"""foundry.broker: config generation (no Java) and real single/three-node KRaft clusters."""

from __future__ import annotations

import random
import shutil
import signal
import socket
import time
import uuid
from pathlib import Path

import psutil
import pytest

from foundry import broker_config as bc
from foundry.broker import KAFKA_VERSION, BrokerError, KafkaCluster, fetch_jars

HAVE_JAVA = shutil.which("java") is not None and shutil.which("mvn") is not None
needs_java = pytest.mark.skipif(not HAVE_JAVA, reason="java and mvn are needed for a real broker")


# ------------------------------------------------------------------ config (no Java)
def _props(brokers: int, port: int, home: Path = Path("/h")) -> dict[int, dict[str, str]]:
    nodes = bc.layout(brokers, port)
    return {n.node_id: bc.server_properties(n, nodes, home) for n in nodes}


def test_single_node_config():
    p = _props(1, 29092)
    assert list(p) == [1]
    c = p[1]
    assert c["process.roles"] == "broker,controller"
    assert c["node.id"] == "1"
    assert c["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert c["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert c["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert c["controller.listener.names"] == "CONTROLLER"
    assert c["inter.broker.listener.name"] == "PLAINTEXT"
    assert set(c["listener.security.protocol.map"].split(",")) == {"PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"}
    for k in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
              "share.coordinator.state.topic.replication.factor", "default.replication.factor",
              "transaction.state.log.min.isr", "share.coordinator.state.topic.min.isr", "min.insync.replicas"):
        assert c[k] == "1", k
    assert c["group.initial.rebalance.delay.ms"] == "0"
    assert c["log.cleaner.enable"] == "true"
    assert c["auto.create.topics.enable"] == "false"
    assert c["num.partitions"] == "4"
    assert c["message.max.bytes"] == c["replica.fetch.max.bytes"] == str(64 * 2**20)
    assert c["log.dirs"] == "/h/node-1/data"
    assert bc.bootstrap_servers(bc.layout(1, 29092)) == "127.0.0.1:29092"


def test_three_node_config():
    p = _props(3, 9092)
    assert sorted(p) == [0, 1, 2, 3]
    ctl = p[0]
    assert ctl["process.roles"] == "controller"
    assert ctl["listeners"] == "CONTROLLER://127.0.0.1:9102"
    assert "advertised.listeners" not in ctl and "PLAINTEXT" not in ctl["listeners"]
    for i, port in ((1, 9092), (2, 9093), (3, 9094)):
        c = p[i]
        assert c["process.roles"] == "broker"
        assert c["node.id"] == str(i)
        assert c["listeners"] == c["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{port}"
        assert c["log.dirs"] == f"/h/node-{i}/data"
    for c in p.values():
        assert c["controller.quorum.voters"] == "0@127.0.0.1:9102"
        assert c["offsets.topic.replication.factor"] == "3"
        assert c["transaction.state.log.replication.factor"] == "3"
        assert c["share.coordinator.state.topic.replication.factor"] == "3"
        assert c["default.replication.factor"] == "3"
        assert c["transaction.state.log.min.isr"] == "2"
        assert c["share.coordinator.state.topic.min.isr"] == "2"
        assert c["min.insync.replicas"] == "2"
    assert bc.bootstrap_servers(bc.layout(3, 9092)) == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert len({port for n in bc.layout(3, 9092) for port in n.ports}) == 4


def test_properties_roundtrip_and_commands(tmp_path):
    nodes = bc.layout(1, 29092)
    props = bc.server_properties(nodes[0], nodes, tmp_path)
    assert bc.parse_properties(bc.render_properties(props)) == props
    cmd = bc.jvm_command(nodes[0], tmp_path, tmp_path / "lib", "512m", tmp_path / "log4j2.properties")
    assert cmd[:4] == ["java", "-Xms512m", "-Xmx512m", "-XX:+UseG1GC"]
    assert cmd[-2:] == ["kafka.Kafka", str(tmp_path / "node-1" / "server.properties")]
    fmt = bc.format_command(nodes[0], tmp_path, tmp_path / "lib", "abc")
    assert "--ignore-formatted" in fmt and "--standalone" not in fmt


def test_cluster_id_and_cache(monkeypatch, tmp_path):
    for _ in range(200):
        cid = bc.new_cluster_id()
        assert len(cid) == 22 and not cid.startswith("-") and "=" not in cid
    monkeypatch.setenv("FOUNDRY_CACHE", str(tmp_path))
    assert bc.lib_dir("9.9.9") == tmp_path / "kafka" / "9.9.9" / "lib"
    monkeypatch.delenv("FOUNDRY_CACHE")
    assert bc.cache_root() == Path.home() / ".cache" / "token-foundry"
    assert bc.LOG4J_TEMPLATE.exists() and bc.POM.exists()
    assert KAFKA_VERSION == "4.1.2"


def test_fetch_jars_clear_error_without_mvn(monkeypatch, tmp_path):
    monkeypatch.setenv("FOUNDRY_CACHE", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(BrokerError, match="mvn not found"):
        fetch_jars("0.0.0-test")


def test_cluster_layout_api(tmp_path):
    c = KafkaCluster(tmp_path, brokers=3, port=29500)
    assert c.bootstrap == "127.0.0.1:29500,127.0.0.1:29501,127.0.0.1:29502"
    assert c.node(0).controller_port == 29510
    assert c.status()["nodes"][0]["alive"] is False
    with pytest.raises(KeyError):
        c.node(7)


def test_cli_help():
    from click.testing import CliRunner

    from foundry.cli_kafka import kafka

    res = CliRunner().invoke(kafka, ["up", "--help"])
    assert res.exit_code == 0 and "--brokers" in res.output and "--version" in res.output


# ------------------------------------------------------------------ real brokers
def _free_base(offsets: list[int]) -> int:
    """A base port in 29000-29999 whose base+offsets are all free (random start: parallel sessions)."""
    bases = list(range(29000, 29990 - max(offsets), 20))
    k = random.randrange(len(bases))
    for base in bases[k:] + bases[:k]:
        ok = True
        for off in offsets:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", base + off))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range in 29000-29999")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _produce(bootstrap: str, topic: str, values: list[str], timeout: float = 60) -> None:
    from confluent_kafka import Producer

    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": int(timeout * 1000)})
    for v in values:
        p.produce(topic, key=v.encode(), value=v.encode(), on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(timeout + 5) == 0, "messages still in flight"
    assert not errors, errors


def _consume(bootstrap: str, topic: str, n: int, timeout: float = 60) -> list[str]:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < n and time.monotonic() < deadline:
            msg = c.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append(msg.value().decode())
        c.commit(asynchronous=False)
    finally:
        c.close()
    return got


def _create_topic(bootstrap: str, name: str, partitions: int, rf: int, min_isr: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(name, partitions, rf, config={"min.insync.replicas": str(min_isr)})])
    fut[name].result(30)


@needs_java
@pytest.mark.kafka
@pytest.mark.timeout(150)  # generous for a cold jar fetch; a warm run takes ~20 s
def test_single_broker_roundtrip(tmp_path):
    fetch_jars()  # outside the timed part: the first ever run copies ~43 MB of jars
    port = _free_base([0, 1])
    cluster = KafkaCluster(tmp_path / "kafka", brokers=1, port=port)
    try:
        t0 = time.monotonic()
        bootstrap = cluster.up(timeout=90)
        assert bootstrap == f"127.0.0.1:{port}" == cluster.bootstrap
        assert time.monotonic() - t0 < 90
        st = cluster.status()
        assert st["answers"] and st["brokers_registered"] == [1]
        (node,) = st["nodes"]
        assert node["alive"] and node["answers"] and node["port"] == port and node["pid"]
        pid = node["pid"]

        _create_topic(bootstrap, "roundtrip", 4, 1, 1)
        _produce(bootstrap, "roundtrip", ["hello", "kafka"])
        assert sorted(_consume(bootstrap, "roundtrip", 2)) == ["hello", "kafka"]

        t1 = time.monotonic()
        assert cluster.up() == bootstrap  # already running: no-op
        assert time.monotonic() - t1 < 10
        assert cluster.status()["nodes"][0]["pid"] == pid

        cluster.down()
        assert _gone(pid)
        assert not cluster.status()["nodes"][0]["alive"]
        assert not (tmp_path / "kafka" / "node-1" / "node.pid").exists()
    finally:
        cluster.down()


@needs_java
@pytest.mark.kafka
@pytest.mark.timeout(150)
def test_three_brokers_survive_one_kill(tmp_path):
    fetch_jars()
    port = _free_base([0, 1, 2, 10])
    cluster = KafkaCluster(tmp_path / "kafka", brokers=3, port=port)
    try:
        bootstrap = cluster.up(timeout=90)
        st = cluster.status()
        assert st["brokers_registered"] == [1, 2, 3]
        assert all(n["alive"] and n["answers"] for n in st["nodes"])

        _create_topic(bootstrap, "replicated", 3, 3, 2)
        before = [f"a{i}" for i in range(30)]
        _produce(bootstrap, "replicated", before)
        assert sorted(_consume(bootstrap, "replicated", 30)) == sorted(before)  # also creates __consumer_offsets

        victim = 2
        pid = cluster.status()["nodes"][victim]["pid"]
        cluster.kill_node(victim, signal.SIGKILL)
        assert _gone(pid)
        after = [f"b{i}" for i in range(30)]
        _produce(bootstrap, "replicated", after)  # acks=all, min ISR 2: two live replicas suffice
        assert sorted(_consume(bootstrap, "replicated", 60)) == sorted(before + after)

        cluster.start_node(victim, timeout=60)
        st = cluster.status()
        assert st["brokers_registered"] == [1, 2, 3]
        assert all(n["alive"] and n["answers"] for n in st["nodes"])
        pids = [n["pid"] for n in st["nodes"]]
        cluster.down()
        assert all(_gone(p) for p in pids)
    finally:
        cluster.down()


@needs_java
@pytest.mark.kafka
@pytest.mark.timeout(90)
def test_failed_start_reports_the_log(tmp_path):
    fetch_jars()
    cluster = KafkaCluster(tmp_path / "kafka", port=_free_base([0, 1]), heap="bogus")
    try:
        with pytest.raises(BrokerError, match=r"(?s)exited during startup.*Invalid initial heap size"):
            cluster.up(timeout=60)
    finally:
        cluster.down()
