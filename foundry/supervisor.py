"""Starts the factory's processes, restarts the ones that die, stops them in order.

Why not supervisord, circus or honcho: the factory needs an ordered drain on the
way down (stop the sources, wait until the pipeline has accounted for every
document they sent, only then stop the workers and the sinks), restarts with
exponential backoff that never give up on an always-on service, and a state
file that ``foundry ps``, ``foundry status`` and the dashboard read. supervisord
gives up after ``startretries`` (FATAL) and stops by priority without a drain
step, and it adds a daemon and an XML-RPC control channel to configure;
circus brings ZeroMQ; honcho (Procfile) restarts nothing. What remains to write
is small: a child per process in its own session (a signal reaches its whole
group), a poll loop, and the state file.

State: ``RUN_DIR/ps.json`` (rewritten atomically on every change) lists each
process with pid, state (running | restarting | done | stopped | exited), start time,
restarts, metrics port and log file; ``RUN_DIR/logs/<name>.log`` is each
process's output and ``RUN_DIR/supervisor.log`` the supervisor's own record
(starts, exits, restarts, stops).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iolayer.atomic_files import atomic_write_bytes


@dataclass
class ProcessSpec:
    name: str
    kind: str  # source | worker | sink | trainer | budget
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    nice: int = 0
    metrics_port: int = 0
    restart: str = "always"  # always | on-failure (a source that reaches the end of its input is done)


@dataclass
class Child:
    spec: ProcessSpec
    log: Path
    popen: subprocess.Popen | None = None
    state: str = "stopped"
    started: float = 0.0  # epoch of the current start
    restarts: int = 0
    backoff: float = 0.0
    next_start: float = 0.0  # monotonic time of the next restart
    up_since: float = 0.0  # monotonic
    last_exit: int | None = None

    def row(self) -> dict[str, Any]:
        return {"name": self.spec.name, "kind": self.spec.kind, "pid": self.popen.pid if self.popen else None,
                "state": self.state, "started": self.started, "restarts": self.restarts,
                "metrics_port": self.spec.metrics_port, "log": str(self.log), "last_exit": self.last_exit}


class Supervisor:
    def __init__(self, run_dir: str | Path, *, backoff_initial_s: float = 1.0, backoff_max_s: float = 30.0,
                 stable_s: float = 30.0, info: dict[str, Any] | None = None):
        self.run_dir = Path(run_dir)
        self.log_dir = self.run_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.backoff_initial_s, self.backoff_max_s, self.stable_s = backoff_initial_s, backoff_max_s, stable_s
        self.info = dict(info or {})
        self.children: dict[str, Child] = {}
        self.started = time.time()

    # -- record ---------------------------------------------------------------------------
    def note(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n"
        with open(self.run_dir / "supervisor.log", "a", encoding="utf-8") as f:
            f.write(line)

    def write_state(self) -> None:
        state = {"started": self.started, "supervisor_pid": os.getpid(), **self.info,
                 "processes": [c.row() for c in self.children.values()]}
        atomic_write_bytes(self.run_dir / "ps.json", (json.dumps(state, indent=1) + "\n").encode())

    # -- start ----------------------------------------------------------------------------
    def add(self, spec: ProcessSpec) -> Child:
        if spec.name in self.children:
            raise ValueError(f"two processes named {spec.name}")
        child = Child(spec, self.log_dir / f"{spec.name}.log", backoff=self.backoff_initial_s)
        self.children[spec.name] = child
        return child

    def _spawn(self, child: Child) -> None:
        spec = child.spec
        env = {**os.environ, **spec.env, "FOUNDRY_PROCESS": spec.name,
               "FOUNDRY_METRICS_PORT": str(spec.metrics_port), "FOUNDRY_RESTARTS": str(child.restarts)}
        # nice(1) rather than a preexec_fn: the supervisor has threads, and code between fork and exec must not
        argv = (["nice", "-n", str(spec.nice)] if spec.nice else []) + spec.argv
        with open(child.log, "ab") as log:
            child.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env=env, start_new_session=True)
        child.state, child.started, child.up_since = "running", time.time(), time.monotonic()
        child.last_exit = None

    def start(self, names: Iterable[str] | None = None) -> None:
        for name in names or list(self.children):
            child = self.children[name]
            self._spawn(child)
            self.note(f"started {name} (pid {child.popen.pid}): {' '.join(child.spec.argv)}")
        self.write_state()

    # -- watch ----------------------------------------------------------------------------
    def poll(self) -> list[str]:
        """One round: note exits, schedule restarts with backoff, restart what is due. Returns what changed."""
        now = time.monotonic()
        changed = []
        for name, child in self.children.items():
            if child.state == "running" and child.popen is not None:
                code = child.popen.poll()
                if code is None:
                    if now - child.up_since >= self.stable_s:
                        child.backoff = self.backoff_initial_s
                    continue
                child.last_exit = code
                if code == 0 and child.spec.restart == "on-failure":
                    child.state = "done"
                    self.note(f"{name} finished (exit 0)")
                    changed.append(name)
                    continue
                child.state = "restarting"
                child.next_start = now + child.backoff
                self.note(f"{name} exited with {code} after {now - child.up_since:.1f}s; "
                          f"restarting in {child.backoff:.1f}s")
                child.backoff = min(child.backoff * 2, self.backoff_max_s)
                changed.append(name)
            elif child.state == "restarting" and now >= child.next_start:
                child.restarts += 1
                self._spawn(child)
                self.note(f"restarted {name} (pid {child.popen.pid}, restart {child.restarts})")
                changed.append(name)
        if changed:
            self.write_state()
        return changed

    # -- stop -----------------------------------------------------------------------------
    def stop(self, kinds: Iterable[str], timeout: float = 60.0) -> None:
        """SIGTERM every process of these kinds (its whole group), wait, SIGKILL what is left."""
        kinds = set(kinds)
        group = [c for c in self.children.values() if c.spec.kind in kinds and c.state in ("running", "restarting")]
        for child in group:
            child.state = "stopping"
            if child.popen is not None and child.popen.poll() is None:
                _signal_group(child.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in group:
            p = child.popen
            if p is None:
                child.state = "stopped"
                continue
            try:
                child.last_exit = p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.note(f"{child.spec.name} did not stop within {timeout:.0f}s; killing it")
                _signal_group(p.pid, signal.SIGKILL)
                child.last_exit = p.wait()
            child.state = "stopped"
            self.note(f"stopped {child.spec.name} (exit {child.last_exit})")
        self.write_state()

    def settled(self, kind: str) -> bool:
        """Every process of ``kind`` has finished by itself (exit 0 under ``on-failure``)."""
        return all(c.state == "done" for c in self.children.values() if c.spec.kind == kind)

    def wait_until(self, done: Callable[[], bool], timeout: float, every_s: float = 0.5) -> bool:
        """Keep supervising (restarts included) until ``done()`` or the timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if done():
                return True
            time.sleep(every_s)
        return done()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def read_state(run_dir: str | Path) -> dict[str, Any] | None:
    """The factory's ps.json, with each process's state checked against the system (a pid that is gone
    reads ``exited``), or None when there is none."""
    try:
        state = json.loads((Path(run_dir) / "ps.json").read_text())
    except (OSError, ValueError):
        return None
    state["supervisor_alive"] = pid_alive(state.get("supervisor_pid"))
    for row in state.get("processes", []):
        if row.get("state") == "running" and not pid_alive(row.get("pid")):
            row["state"] = "exited"
        if not state["supervisor_alive"] and row.get("state") in ("running", "restarting", "stopping"):
            row["state"] = "exited" if not pid_alive(row.get("pid")) else row["state"]
    return state


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
