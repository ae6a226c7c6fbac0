"""``foundry status`` against a real run: under a pseudo-terminal (the screen is read back)
and as ``--once --json``."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

from click.testing import CliRunner

from foundry.cli_status import status
from schemas import Topics
from tests.telemetry.live_run import live_run

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def _row(screen: str, first_cell: str) -> list[str] | None:
    """The cells of the last row on the screen that starts with ``first_cell`` (tables stand
    side by side, so a row is its first cell and the words after it, up to the line's end)."""
    pattern = re.compile(rf"(?:^|\s\s){re.escape(first_cell)}\s")
    found = None
    for line in screen.splitlines():
        m = pattern.search(line)
        if m:
            found = [first_cell] + line[m.end():].split()
    return found


def _number(cell: str) -> float:
    return float(cell.replace(",", ""))


def read_screen(cmd: list[str], until, timeout: float = 60.0) -> str:
    """Run ``cmd`` on a pseudo-terminal (120x80) until ``until(screen text)`` holds; the text, ANSI removed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 80, 120, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "80"}
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    raw = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    raw += os.read(master, 65536)
                except OSError:
                    break
            screen = ANSI.sub("", raw.decode("utf-8", errors="replace"))
            if until(screen):
                return screen
        return ANSI.sub("", raw.decode("utf-8", errors="replace"))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)


def test_status_shows_the_run_on_a_terminal_and_as_json(kafka_bootstrap, tmp_path, unique_name):
    with live_run(kafka_bootstrap, tmp_path, unique_name) as run:
        truth = run.outcomes()
        topics = Topics(namespace=unique_name)
        lag_topics = {f"{unique_name}.raw", topics.sequenced, topics.keyed, topics.tokenized, topics.rejections}
        deadline = time.monotonic() + 60
        while True:  # the sinks' counters move when a part is durable
            res = CliRunner().invoke(status, ["--run-dir", str(run.run_dir), "--once", "--json", "--refresh", "0.2"])
            assert res.exit_code == 0, res.output
            snap = json.loads(res.output)
            rows = snap["sinks"]["rows"]
            # Each process probes its lag every few seconds, from its own start: wait for all topics.
            if (rows.get("manifest") == truth["kept"] and rows.get("ledger") == truth["rejected"]
                    and set(snap["lag"]) >= lag_topics) or time.monotonic() > deadline:
                break
            time.sleep(1)

        def complete(screen: str) -> bool:
            ledger, curate = _row(screen, "sink ledger"), _row(screen, "curate")
            return bool(ledger and curate and _number(ledger[1]) == truth["rejected"])

        screen = read_screen([sys.executable, "-m", "foundry.cli", "status", "--run-dir", str(run.run_dir),
                              "--refresh", "0.5"], complete)

    # --once --json: the figures of the run.
    assert {p["name"]: (p["state"], p["scraped"]) for p in snap["processes"]} == {
        "worker": ("running", True), "shard-writer": ("running", True), "ledger": ("running", True)}
    assert snap["stages"]["ingest"]["in"] == truth["docs_in"]
    assert snap["stages"]["curate"]["kept"] == truth["kept"]
    assert snap["rejections"] == truth["reasons"]
    assert snap["sinks"]["shards"] == truth["shards"]
    assert set(snap["lag"]) == lag_topics
    # The terminal view: one row per process with its state, the stage counts, the reasons.
    assert complete(screen), screen[-4000:]
    for name in ("worker", "shard-writer", "ledger"):
        cells = _row(screen, name)
        assert cells is not None and cells[2] == "running", screen[-4000:]
    ingest, curate = _row(screen, "ingest"), _row(screen, "curate")
    assert _number(ingest[1]) == truth["docs_in"]
    assert _number(curate[2]) == truth["kept"]
    assert _number(_row(screen, "sink manifest")[1]) == truth["kept"]
    for reason, n in truth["reasons"].items():
        cells = _row(screen, reason)
        assert cells is not None and _number(cells[1]) == n, (reason, screen[-4000:])


def test_status_once_without_a_process_table_fails_clearly(tmp_path):
    res = CliRunner().invoke(status, ["--run-dir", str(tmp_path), "--once", "--json"])
    assert res.exit_code == 1
    assert "no factory process table" in res.output


def test_status_rejects_a_broken_process_table(tmp_path):
    (tmp_path / "ps.json").write_text("{not json")
    res = CliRunner().invoke(status, ["--run-dir", str(tmp_path), "--once"])
    assert res.exit_code != 0 and "not a process table" in res.output


def test_status_shows_restarts_and_says_when_no_process_serves_metrics(tmp_path):
    (tmp_path / "ps.json").write_text(json.dumps({"started": 1, "namespace": "ns", "out_dir": "o", "processes": [
        {"name": "worker-0", "kind": "worker", "pid": 1, "state": "restarting", "started": time.time(),
         "restarts": 3, "metrics_port": 0, "log": "l"}]}))
    res = CliRunner().invoke(status, ["--run-dir", str(tmp_path), "--once", "--refresh", "0.1"])
    assert res.exit_code == 0, res.output
    cells = _row(res.output, "worker-0")
    assert cells[2] == "restarting" and cells[5] == "3"
    assert "no process serves metrics" in res.output
