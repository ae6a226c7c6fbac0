"""Local Apache Kafka (KRaft) launcher: real JVM brokers from Maven Central jars.

No Docker and no download sites: ``fetch_jars`` resolves the broker with Maven
(``foundry/kafka_assets/pom.xml``) into ``$FOUNDRY_CACHE/kafka/<version>/lib`` and
``KafkaCluster`` formats storage and runs ``kafka.Kafka`` processes, one per node,
each in its own session. Port layout and per-node files: see ``foundry.broker_config``.

    cluster = KafkaCluster(Path("var/kafka"), brokers=3, port=29092)
    bootstrap = cluster.up()       # "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094"
    cluster.kill_node(2); cluster.start_node(2)
    cluster.down()
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

from foundry.broker_config import (
    INTER_BROKER_USER,
    KAFKA_VERSION,
    LOG4J_TEMPLATE,
    POM,
    NodeSpec,
    bootstrap_servers,
    cds_archive,
    format_command,
    jvm_command,
    layout,
    lib_dir,
    new_cluster_id,
    render_properties,
    server_properties,
)
from iolayer.kafka_config import KafkaSecurity, confluent_config

__all__ = ["KAFKA_VERSION", "BrokerError", "KafkaCluster", "fetch_jars"]

MARKER = ".foundry-complete"
LOG_TAIL_LINES = 40


class BrokerError(RuntimeError):
    """The broker could not be fetched, started or stopped."""


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise BrokerError("java not found: install a JDK/JRE 17+ (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME")
    return found


def fetch_jars(version: str = KAFKA_VERSION) -> Path:
    """Resolve the broker's runtime jars with Maven; returns the lib folder. Skips when complete."""
    lib = lib_dir(version)
    if (lib / MARKER).exists():
        return lib
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerError("mvn not found: install Maven 3.6+ (e.g. apt-get install maven) to fetch the Kafka jars")
    _java()
    if lib.exists():
        shutil.rmtree(lib)  # a partial copy from an interrupted run
    lib.parent.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-q", "-B", "-f", str(POM), f"-Dkafka.version={version}", "dependency:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={lib}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    jars = sorted(p.name for p in lib.glob("*.jar")) if lib.exists() else []
    if res.returncode != 0 or not any(j.startswith("kafka_2.13-") for j in jars):
        out = "\n".join((res.stdout + res.stderr).splitlines()[-LOG_TAIL_LINES:])
        raise BrokerError(f"mvn could not fetch Kafka {version} (rc={res.returncode}):\n{' '.join(cmd)}\n{out}")
    (lib / MARKER).write_text(json.dumps({"version": version, "jars": jars}, indent=1) + "\n")
    return lib


def _cds_enabled() -> bool:
    """AppCDS class archive for faster JVM starts; FOUNDRY_KAFKA_CDS=0 turns it off."""
    return os.environ.get("FOUNDRY_KAFKA_CDS", "1") != "0"


def _port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _metadata(bootstrap: str, timeout: float, security: KafkaSecurity | None = None):
    """A ClusterMetadata answered by the cluster, or None (``security``: the launcher's own
    credentials on a SASL cluster; otherwise the environment's settings)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(confluent_config(bootstrap, {"log_level": 0,
                         "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000))},
                                         security=security))
    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException:
        return None


def _tail(path: Path, n: int = LOG_TAIL_LINES) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


class KafkaCluster:
    """One to N KRaft nodes on 127.0.0.1 under ``home`` (see ``foundry.broker_config``)."""

    def __init__(self, home: Path, brokers: int = 1, port: int = 9092, heap: str = "512m",
                 version: str = KAFKA_VERSION, controller_heap: str = "256m",
                 sasl_users: dict[str, str] | None = None):
        self.home = Path(home).resolve()
        # Users allowed on the SASL/PLAIN client listener; None: a PLAINTEXT cluster.
        self.sasl_users = dict(sasl_users) if sasl_users is not None else None
        self.brokers, self.port, self.heap, self.version = brokers, port, heap, version
        self.controller_heap = controller_heap
        self.nodes: list[NodeSpec] = layout(brokers, port)
        self._procs: dict[int, subprocess.Popen] = {}

    @classmethod
    def from_home(cls, home: Path, **overrides) -> KafkaCluster:
        """The cluster recorded in ``home/cluster.json`` (defaults when none), with overrides."""
        state = cls._read_state(Path(home))
        kw = {k: state[k] for k in ("brokers", "port", "heap", "version", "sasl_users") if k in state}
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(Path(home), **kw)

    # ---------------------------------------------------------------- layout
    @property
    def bootstrap(self) -> str:
        return bootstrap_servers(self.nodes)

    def node(self, node_id: int) -> NodeSpec:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(f"no node {node_id}; nodes are {[n.node_id for n in self.nodes]}")

    def _inter_broker_password(self) -> str | None:
        if self.sasl_users is None:
            return None
        state = self._read_state(self.home)
        return state.get("inter_broker_password") or secrets.token_urlsafe(18)

    @property
    def security(self) -> KafkaSecurity | None:
        """The credentials this launcher's own probes use (the inter-broker user on a SASL
        cluster; None: whatever the environment says)."""
        password = self._inter_broker_password()
        if password is None:
            return None
        return KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                             sasl_username=INTER_BROKER_USER, sasl_password=password)

    @property
    def broker_nodes(self) -> list[NodeSpec]:
        return [n for n in self.nodes if n.is_broker]

    def _pidfile(self, n: NodeSpec) -> Path:
        return n.dir(self.home) / "node.pid"

    def log_path(self, node_id: int) -> Path:
        return self.node(node_id).dir(self.home) / "logs" / "server.log"

    def _stdout_path(self, n: NodeSpec) -> Path:
        return n.dir(self.home) / "logs" / "stdout.log"

    @staticmethod
    def _read_state(home: Path) -> dict:
        try:
            return json.loads((home / "cluster.json").read_text())
        except (OSError, ValueError):
            return {}

    # ------------------------------------------------------------- processes
    def _pid(self, n: NodeSpec) -> int | None:
        try:
            return int(self._pidfile(n).read_text().strip())
        except (OSError, ValueError):
            return None

    def _alive(self, n: NodeSpec) -> bool:
        pid = self._pid(n)
        if pid is None:
            return False
        proc = self._procs.get(n.node_id)
        if proc is not None and proc.pid == pid:
            return proc.poll() is None
        try:
            p = psutil.Process(pid)
            return p.status() != psutil.STATUS_ZOMBIE and str(n.dir(self.home) / "server.properties") in p.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def _prepare(self) -> tuple[Path, str]:
        """Jars, cluster id, log4j config and every node's server.properties."""
        lib = fetch_jars(self.version)
        _java()
        self.home.mkdir(parents=True, exist_ok=True)
        state = self._read_state(self.home)
        if state and state.get("brokers") != self.brokers:
            raise BrokerError(f"{self.home} holds a {state.get('brokers')}-broker cluster; "
                              f"run `down` and remove the folder to change to {self.brokers}")
        if state and state.get("port") != self.port and any(self._alive(n) for n in self.nodes):
            raise BrokerError(f"{self.home} is running on port {state.get('port')}; run `down` before changing it")
        cluster_id = state.get("cluster_id") or new_cluster_id()
        inter_password = self._inter_broker_password()
        state = {"cluster_id": cluster_id, "brokers": self.brokers, "port": self.port,
                 "heap": self.heap, "version": self.version, "bootstrap": self.bootstrap}
        if self.sasl_users is not None:  # kept so a restarted node accepts the same users
            state.update(sasl_users=self.sasl_users, inter_broker_password=inter_password)
        state_file = self.home / "cluster.json"
        state_file.write_text(json.dumps(state, indent=1) + "\n")
        if self.sasl_users is not None:
            state_file.chmod(0o600)
        shutil.copyfile(LOG4J_TEMPLATE, self.home / "log4j2.properties")
        for n in self.nodes:
            d = n.dir(self.home)
            (d / "logs").mkdir(parents=True, exist_ok=True)
            (d / "server.properties").write_text(render_properties(server_properties(
                n, self.nodes, self.home, self.sasl_users, inter_password)))
        return lib, cluster_id

    def _format(self, nodes: list[NodeSpec], lib: Path, cluster_id: str) -> None:
        todo = [n for n in nodes if not (n.dir(self.home) / "data" / "meta.properties").exists()]
        extra = [f"-XX:SharedArchiveFile={jsa}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"] \
            if todo and _cds_enabled() and (jsa := cds_archive(lib, _java())).exists() else []
        procs = [(n, subprocess.Popen([_java(), *format_command(n, self.home, lib, cluster_id, extra)[1:]],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)) for n in todo]
        for n, p in procs:  # formats run in parallel: each is a ~2 s JVM start
            out, _ = p.communicate()
            if p.returncode != 0:
                raise BrokerError(f"StorageTool format failed for node {n.node_id} (rc={p.returncode}):\n{out[-4000:]}")

    def _spawn(self, n: NodeSpec, lib: Path) -> None:
        busy = [p for p in n.ports if _port_open(p)]
        if busy:
            raise BrokerError(f"port(s) {busy} of node {n.node_id} are already in use by another process")
        heap = self.heap if n.is_broker else self.controller_heap
        extra: list[str] = []
        if _cds_enabled():
            tmp, jsa = self._cds_paths(n)
            if jsa.exists():
                extra = [f"-XX:SharedArchiveFile={jsa}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
            else:  # the JVM writes the archive when it exits; _stop promotes it after a clean exit
                tmp.parent.mkdir(parents=True, exist_ok=True)
                tmp.unlink(missing_ok=True)
                extra = [f"-XX:ArchiveClassesAtExit={tmp}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
        cmd = jvm_command(n, self.home, lib, heap, self.home / "log4j2.properties", extra)
        cmd[0] = _java()
        with open(self._stdout_path(n), "ab") as out:
            proc = subprocess.Popen(cmd, cwd=n.dir(self.home), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self._procs[n.node_id] = proc
        self._pidfile(n).write_text(f"{proc.pid}\n")

    def _cds_paths(self, n: NodeSpec) -> tuple[Path, Path]:
        jsa = cds_archive(lib_dir(self.version), _java())
        home_key = hashlib.sha1(str(self.home).encode()).hexdigest()[:8]  # clusters never share a dump
        return jsa.with_name(f"{jsa.name}.{home_key}-node{n.node_id}.tmp"), jsa

    def _failure(self, what: str, nodes: list[NodeSpec]) -> BrokerError:
        parts = [what]
        for n in nodes:
            state = "alive" if self._alive(n) else "not running"
            parts.append(f"--- node {n.node_id} ({state}) {self.log_path(n.node_id)} (last {LOG_TAIL_LINES} lines):")
            parts.append(_tail(self.log_path(n.node_id)))
            stdout = _tail(self._stdout_path(n))
            if stdout.strip() and stdout != "(no log)":
                parts += [f"--- node {n.node_id} stdout/stderr {self._stdout_path(n)}:", stdout]
        return BrokerError("\n".join(parts))

    def _wait_ready(self, nodes: list[NodeSpec], deadline: float) -> None:
        """Every node's ports open, then the brokers answer a metadata request listing all brokers."""
        pending = list(nodes)
        while True:
            dead = [n for n in nodes if not self._alive(n)]
            if dead:
                raise self._failure(f"Kafka node(s) {[n.node_id for n in dead]} exited during startup", dead)
            pending = [n for n in pending if not all(_port_open(p) for p in n.ports)]
            if not pending:
                t = min(5.0, max(0.5, deadline - time.monotonic()))
                md = _metadata(self.bootstrap, timeout=t, security=self.security)
                if md is not None and all(self._broker_answers(n, t) for n in nodes if n.is_broker) \
                        and (len(nodes) < len(self.nodes) or len(md.brokers) == len(self.broker_nodes)):
                    return
            if time.monotonic() > deadline:
                raise self._failure(f"Kafka cluster at {self.bootstrap} not ready in time "
                                    f"(ports pending on nodes {[n.node_id for n in pending]})", nodes)
            time.sleep(0.25)

    def _broker_answers(self, n: NodeSpec, timeout: float = 3.0) -> bool:
        """This broker itself answers a metadata request and lists itself as registered."""
        md = _metadata(f"127.0.0.1:{n.broker_port}", timeout=timeout, security=self.security)
        return md is not None and n.node_id in md.brokers

    def _answers(self) -> bool:
        md = _metadata(self.bootstrap, timeout=3.0, security=self.security)
        return md is not None and len(md.brokers) == len(self.broker_nodes)

    # -------------------------------------------------------------- public API
    def up(self, timeout: float = 120) -> str:
        """Start every node that is not running and wait until the cluster answers; returns bootstrap."""
        if all(self._alive(n) for n in self.nodes) and self._answers():
            return self.bootstrap
        deadline = time.monotonic() + timeout
        lib, cluster_id = self._prepare()
        todo = [n for n in self.nodes if not self._alive(n)]
        self._format(todo, lib, cluster_id)
        for n in todo:  # controllers first
            self._spawn(n, lib)
        self._wait_ready(self.nodes, deadline)
        return self.bootstrap

    def down(self, timeout: float = 30) -> None:
        """SIGTERM brokers (then controllers), wait, SIGKILL what is left; removes pid files."""
        brokers_only = [n for n in self.nodes if not n.is_controller]
        controllers = [n for n in self.nodes if n.is_controller]
        for group in (brokers_only, controllers):
            if group:
                self._stop(group, signal.SIGTERM, timeout)

    def _stop(self, nodes: list[NodeSpec], sig: int, timeout: float) -> None:
        live = [n for n in nodes if self._alive(n)]
        for n in live:
            try:
                os.kill(self._pid(n), sig)  # type: ignore[arg-type]
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while any(self._alive(n) for n in live) and time.monotonic() < deadline:
            time.sleep(0.1)
        clean = [n for n in live if not self._alive(n)] if sig == signal.SIGTERM else []
        for n in live:
            if self._alive(n):
                try:
                    os.kill(self._pid(n), signal.SIGKILL)  # type: ignore[arg-type]
                except ProcessLookupError:
                    pass
        while any(self._alive(n) for n in live) and time.monotonic() < deadline + 10:
            time.sleep(0.05)
        for n in live:  # an AppCDS archive dumped at exit is kept only after a clean exit
            tmp, jsa = self._cds_paths(n)
            if n in clean and tmp.exists() and tmp.stat().st_size > 0 and not jsa.exists():
                os.replace(tmp, jsa)
            tmp.unlink(missing_ok=True)
        for n in nodes:
            if not self._alive(n):
                self._pidfile(n).unlink(missing_ok=True)
                proc = self._procs.pop(n.node_id, None)
                if proc is not None:
                    proc.poll()

    def kill_node(self, node_id: int, sig: int = signal.SIGKILL, timeout: float = 30) -> None:
        """Send ``sig`` to one node; for SIGKILL/SIGTERM wait until it is gone (fault tests)."""
        n = self.node(node_id)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self._stop([n], sig, timeout)
        elif self._alive(n):
            os.kill(self._pid(n), sig)  # type: ignore[arg-type]

    def start_node(self, node_id: int, timeout: float = 120) -> None:
        """Start one stopped node and wait until the cluster answers with every broker registered."""
        n = self.node(node_id)
        if not self._alive(n):
            lib, cluster_id = self._prepare()
            self._format([n], lib, cluster_id)
            self._spawn(n, lib)
        self._wait_ready([n], time.monotonic() + timeout)

    def status(self) -> dict:
        """Per node: pid, alive, port(s), rss, and whether it answers; plus cluster-level answers."""
        nodes = []
        for n in self.nodes:
            alive = self._alive(n)
            pid = self._pid(n) if alive else None
            rss = None
            if alive:
                try:
                    rss = psutil.Process(pid).memory_info().rss
                except psutil.Error:
                    pass
            if not alive or not all(_port_open(p) for p in n.ports):
                answers = False
            elif n.is_broker:
                answers = self._broker_answers(n)
            else:
                answers = True  # a dedicated controller speaks only the controller protocol: port open
            nodes.append({"node_id": n.node_id, "roles": list(n.roles), "pid": pid, "alive": alive,
                          "port": n.port, "controller_port": n.controller_port, "answers": answers,
                          "rss_mib": round(rss / 2**20, 1) if rss else None})
        md = _metadata(self.bootstrap, timeout=3.0, security=self.security) if any(x["answers"] for x in nodes) else None
        return {"home": str(self.home), "bootstrap": self.bootstrap, "version": self.version,
                "cluster_id": self._read_state(self.home).get("cluster_id"),
                "answers": md is not None, "brokers_registered": sorted(md.brokers) if md else [],
                "nodes": nodes}
