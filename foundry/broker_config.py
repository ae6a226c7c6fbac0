"""Pure helpers for the local Kafka launcher (no Java, no processes).

Port layout (``port`` is the base port, 9092 by default):

* ``brokers=1``: one combined broker+controller, ``node.id=1``,
  PLAINTEXT on ``127.0.0.1:port``, CONTROLLER on ``127.0.0.1:port+1``.
* ``brokers=N`` (N > 1, 3 is the supported case): one dedicated controller,
  ``node.id=0``, CONTROLLER on ``127.0.0.1:port+10``, plus N broker-only nodes
  ``node.id=1..N`` with PLAINTEXT on ``port, port+1, ..., port+N-1``.
  Killing brokers never touches the (single-voter) quorum.

With ``sasl_users`` (``KafkaCluster(..., sasl_users={"alice": "secret"})``) the client
port of every broker is a SASL_PLAINTEXT listener that requires SASL/PLAIN: only the
listed users (plus one inter-broker user, ``INTER_BROKER_USER``) can connect; the
controller listener stays PLAINTEXT on 127.0.0.1.

Each node lives in ``<home>/node-<id>/`` with ``server.properties``,
``data/`` (log.dirs and the metadata log), ``logs/`` (server.log plus the
JVM's stdout/stderr in ``stdout.log``) and ``node.pid``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

KAFKA_VERSION = "4.1.2"

# The Maven file and log4j template are package data of `foundry`, so `foundry kafka up`
# finds them in a wheel install as in a checkout.
KAFKA_ASSETS = Path(os.fspath(resources.files("foundry").joinpath("kafka_assets")))
POM = KAFKA_ASSETS / "pom.xml"
LOG4J_TEMPLATE = KAFKA_ASSETS / "log4j2.properties"

HOST = "127.0.0.1"
CONTROLLER_OFFSET = 10  # dedicated controller port = port + 10 (multi-broker layout)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
INTER_BROKER_USER = "foundry-broker"  # the brokers' own identity on a SASL listener


def cache_root() -> Path:
    """``$FOUNDRY_CACHE`` or ``~/.cache/token-foundry`` (never inside the clone)."""
    env = os.environ.get("FOUNDRY_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "token-foundry"


def lib_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_root() / "kafka" / version / "lib"


def new_cluster_id() -> str:
    """Same shape as ``kafka.tools.StorageTool random-uuid``: 22 chars of URL-safe
    base64 of 16 random bytes, never starting with '-' (it would parse as a flag)."""
    while True:
        cid = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass(frozen=True)
class NodeSpec:
    node_id: int
    roles: tuple[str, ...]  # subset of ("broker", "controller")
    broker_port: int | None  # PLAINTEXT listener, None for a dedicated controller
    controller_port: int | None  # CONTROLLER listener, None for a broker-only node

    @property
    def is_broker(self) -> bool:
        return "broker" in self.roles

    @property
    def is_controller(self) -> bool:
        return "controller" in self.roles

    @property
    def port(self) -> int:
        """The port that identifies the node (client port if it has one)."""
        return self.broker_port if self.broker_port is not None else self.controller_port  # type: ignore[return-value]

    @property
    def ports(self) -> list[int]:
        return [p for p in (self.broker_port, self.controller_port) if p is not None]

    def dir(self, home: Path) -> Path:
        return Path(home) / f"node-{self.node_id}"


def layout(brokers: int = 1, port: int = 9092) -> list[NodeSpec]:
    """Nodes of the cluster, controllers first (start order; stop in reverse)."""
    if brokers < 1:
        raise ValueError("brokers must be >= 1")
    if brokers == 1:
        return [NodeSpec(1, ("broker", "controller"), port, port + 1)]
    if brokers > CONTROLLER_OFFSET:
        raise ValueError(f"at most {CONTROLLER_OFFSET} brokers fit before the controller port")
    nodes = [NodeSpec(0, ("controller",), None, port + CONTROLLER_OFFSET)]
    nodes += [NodeSpec(i + 1, ("broker",), port + i, None) for i in range(brokers)]
    return nodes


def bootstrap_servers(nodes: list[NodeSpec]) -> str:
    return ",".join(f"{HOST}:{n.broker_port}" for n in nodes if n.is_broker)


def quorum_voters(nodes: list[NodeSpec]) -> str:
    return ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in nodes if n.is_controller)


def replication(brokers: int) -> tuple[int, int]:
    """(replication factor, min ISR) for internal and default topics."""
    rf = min(3, brokers)
    return rf, max(1, rf - 1)


def _jaas_quote(value: str, *, name: bool = False) -> str:
    # The value goes into a properties line between quotes: refuse what would end it early.
    if name and not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
        raise ValueError(f"SASL user names are letters, digits, '_', '.' and '-': {value!r}")
    if not value or any(c in value for c in '"\\;\n\r'):
        raise ValueError("SASL passwords may not be empty or contain quotes, backslashes, ';' or newlines")
    return value


def plain_jaas_config(users: Mapping[str, str], inter_broker_password: str) -> str:
    """The PLAIN login module line of a SASL listener: the broker's own (inter-broker)
    identity, then one ``user_<name>="<password>"`` entry per allowed user."""
    entries = {INTER_BROKER_USER: inter_broker_password, **users}
    parts = [f'username="{INTER_BROKER_USER}"', f'password="{_jaas_quote(inter_broker_password)}"']
    parts += [f'user_{_jaas_quote(u, name=True)}="{_jaas_quote(pw)}"' for u, pw in entries.items()]
    return "org.apache.kafka.common.security.plain.PlainLoginModule required " + " ".join(parts) + ";"


def server_properties(node: NodeSpec, nodes: list[NodeSpec], home: Path,
                      sasl_users: Mapping[str, str] | None = None,
                      inter_broker_password: str | None = None) -> dict[str, str]:
    """``server.properties`` of one node as an ordered dict (``sasl_users``: see the module doc)."""
    n_brokers = sum(1 for n in nodes if n.is_broker)
    rf, min_isr = replication(n_brokers)
    if sasl_users is not None and not inter_broker_password:
        raise ValueError("a SASL cluster needs the inter-broker user's password")
    client = "SASL_PLAINTEXT" if sasl_users is not None else "PLAINTEXT"
    listeners, protocols = [], []
    if node.broker_port is not None:
        listeners.append(f"{client}://{HOST}:{node.broker_port}")
        protocols.append(f"{client}:{client}")
    if node.controller_port is not None:
        listeners.append(f"CONTROLLER://{HOST}:{node.controller_port}")
    protocols.append("CONTROLLER:PLAINTEXT")
    props: dict[str, str] = {
        "process.roles": ",".join(node.roles),
        "node.id": str(node.node_id),
        "controller.quorum.voters": quorum_voters(nodes),
        "controller.listener.names": "CONTROLLER",
        "listeners": ",".join(listeners),
        "listener.security.protocol.map": ",".join(protocols),
        "log.dirs": str(node.dir(home) / "data"),
    }
    if node.is_broker:
        props["advertised.listeners"] = f"{client}://{HOST}:{node.broker_port}"
        props["inter.broker.listener.name"] = client
        if sasl_users is not None:
            props["sasl.enabled.mechanisms"] = "PLAIN"
            props["sasl.mechanism.inter.broker.protocol"] = "PLAIN"
            props["listener.name.sasl_plaintext.plain.sasl.jaas.config"] = plain_jaas_config(
                sasl_users, inter_broker_password)  # type: ignore[arg-type]
    # Cluster-wide defaults. Controllers need them too: in KRaft the controller
    # applies num.partitions / default.replication.factor to CreateTopics.
    props.update(
        {
            "num.partitions": "4",
            "default.replication.factor": str(rf),
            "min.insync.replicas": str(min_isr),
            "offsets.topic.replication.factor": str(rf),
            "transaction.state.log.replication.factor": str(rf),
            "transaction.state.log.min.isr": str(min_isr),
            "share.coordinator.state.topic.replication.factor": str(rf),
            "share.coordinator.state.topic.min.isr": str(min_isr),
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.cleaner.enable": "true",
            "message.max.bytes": str(MAX_MESSAGE_BYTES),
            "replica.fetch.max.bytes": str(MAX_MESSAGE_BYTES),
            "unclean.leader.election.enable": "false",
        }
    )
    return props


def render_properties(props: dict[str, str]) -> str:
    lines = ["# Generated by foundry.broker; edits are overwritten on `foundry kafka up`."]
    lines += [f"{k}={v}" for k, v in props.items()]
    return "\n".join(lines) + "\n"


def parse_properties(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def cds_archive(lib: Path, java: str) -> Path:
    """AppCDS archive of the broker's classes for this java binary and jar set.

    Starting a broker with ``-XX:SharedArchiveFile`` cuts JVM start by ~5 s on a
    busy 2-core host; the JVM validates the archive and ignores a mismatched one.
    """
    key = []
    for f in (Path(os.path.realpath(java)), lib / ".foundry-complete"):
        try:
            st = f.stat()
            key.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            key.append(str(f))
    digest = hashlib.sha1("|".join(key).encode()).hexdigest()[:12]
    return lib.parent / "cds" / f"kafka-{digest}.jsa"


def jvm_command(node: NodeSpec, home: Path, lib: Path, heap: str, log4j: Path,
                extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    d = node.dir(home)
    return [
        "java",
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={d / 'logs'}",
        f"-Dlog4j2.configurationFile={log4j}",
        *extra,
        "-cp",
        f"{lib}/*",
        "kafka.Kafka",
        str(d / "server.properties"),
    ]


def format_command(node: NodeSpec, home: Path, lib: Path, cluster_id: str,
                   extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    # With a fixed controller.quorum.voters (static quorum) neither --standalone
    # nor --initial-controllers may be given.
    return [
        "java",
        "-Xmx256m",
        "-XX:TieredStopAtLevel=1",  # a short-lived tool: C1 only, serial GC (~2x faster)
        "-XX:+UseSerialGC",
        "-XX:-UsePerfData",
        f"-Dlog4j2.configurationFile={Path(home) / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={node.dir(home) / 'logs'}",
        *extra,
        "-cp",
        f"{lib}/*",
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id,
        "-c",
        str(node.dir(home) / "server.properties"),
        "--ignore-formatted",
    ]
