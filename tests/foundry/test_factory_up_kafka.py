"""`foundry up --detach`, `foundry ps`, a worker killed with SIGKILL and restarted by the supervisor,
then `foundry down`: the processes as a user drives them, against the real broker."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from foundry.audit import audit_output
from schemas.recipe import RECIPES_DIR

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]


def _foundry(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "foundry.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _ps(run_dir: Path) -> dict:
    res = _foundry("ps", "--run-dir", str(run_dir), "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}")


def test_up_detached_restarts_a_killed_worker_and_down_stops_in_order(kafka_bootstrap, unique_name, tmp_path):
    run_dir, out = tmp_path / "run", tmp_path / "out"
    recipe = yaml.safe_load((RECIPES_DIR / "minimal.yaml").read_text())  # no curation operators: quick to start
    recipe["tokenizer"]["model"] = "pkg:models/tokenizer/foundry-sp32k-v1.model"
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    config = tmp_path / "factory.yaml"
    config.write_text(yaml.safe_dump({
        "run_dir": str(run_dir), "out": str(out), "bootstrap": kafka_bootstrap, "kafka_home": None,
        "namespace": unique_name, "raw_topic": f"foundry.{unique_name}.raw", "recipe": str(tmp_path / "recipe.yaml"),
        "trainer": {"enabled": False}, "budget": {"enabled": False}, "metrics_port": 0,
        "restart": {"backoff_initial_s": 0.5},
        "sources": [{"kind": "generator", "name": "salad", "rate": 40, "seed": 1},
                    {"kind": "files", "name": "drop", "paths": [str(tmp_path / "drop")], "watch_s": 1}]}))
    (tmp_path / "drop").mkdir()
    res = _foundry("up", "--config", str(config), "--detach")
    assert res.returncode == 0, res.stdout + res.stderr
    try:
        again = _foundry("up", "--config", str(config), "--detach")
        assert again.returncode == 1 and "already running" in again.stderr

        state = _ps(run_dir)
        assert state["supervisor_alive"] and {p["name"] for p in state["processes"]} == {
            "shard-writer", "ledger", "worker-0", "source-salad", "source-drop"}
        # a file dropped into the watched folder (written under a temporary name, then renamed) is ingested
        tmp = tmp_path / "drop" / "batch1.jsonl.tmp"
        tmp.write_text("".join(json.dumps({"id": f"drop-{i}", "text": f"dropped document number {i} " * 5}) + "\n"
                               for i in range(30)))
        tmp.rename(tmp_path / "drop" / "batch1.jsonl")

        worker = next(p for p in state["processes"] if p["name"] == "worker-0")
        time.sleep(8)  # let it take some documents first
        os.killpg(worker["pid"], signal.SIGKILL)
        restarted = _wait(lambda: next((p for p in _ps(run_dir)["processes"]
                                        if p["name"] == "worker-0" and p["restarts"] >= 1 and p["state"] == "running"),
                                       None), 60, "the worker's restart")
        assert restarted["pid"] != worker["pid"]
        assert "worker-0 exited with -9" in (run_dir / "supervisor.log").read_text()
        time.sleep(8)
    finally:
        down = _foundry("down", "--run-dir", str(run_dir), timeout=600)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "documents in" in down.stdout  # the summary table
    state = _ps(run_dir)
    assert not state["supervisor_alive"] and state["phase"] == "stopped"
    assert {p["state"] for p in state["processes"]} == {"stopped"}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["drained"] and summary["accounted"] == summary["docs_in"] > 100
    assert summary["by_source"]["drop"]["in"] == 30
    assert summary["restarts"]["worker-0"] >= 1
    report = audit_output(summary["out_dir"], bootstrap=kafka_bootstrap, raw_topic=f"foundry.{unique_name}.raw")
    assert report.ok, report.text()
