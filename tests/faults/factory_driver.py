"""Drives `foundry up --detach` / `ps` / `down` as a user would, for the fault tests."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from foundry.audit import audit_output
from schemas.recipe import RECIPES_DIR

ROOT = Path(__file__).resolve().parents[2]


def fault_rounds(default: int = 3) -> int:
    """Rounds of each fault: ``make faults`` runs 20; the default suite a few."""
    return int(os.environ.get("FOUNDRY_FAULT_ROUNDS", default))


# The default suite (`make test`) runs the shortened set; `make faults` (which sets the rounds) all of it.
full_suite_only = pytest.mark.skipif("FOUNDRY_FAULT_ROUNDS" not in os.environ,
                                     reason="slow fault: `make faults` runs it")


def foundry(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "foundry.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def wait_for(pred, timeout: float, what: str, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class Factory:
    """One supervised factory on ``bootstrap``: minimal recipe with the shipped tokenizer, one
    generator source of ``n_docs`` at ``rate``, no trainer or budget agent unless asked."""

    def __init__(self, tmp: Path, bootstrap: str, namespace: str, *, n_docs: int, rate: float,
                 trainer: dict | None = None, out: Path | None = None):
        self.run_dir, self.out = tmp / "run", out or tmp / "out"
        self.bootstrap, self.namespace = bootstrap, namespace
        self.raw_topic = f"foundry.{namespace}.raw"
        recipe = yaml.safe_load((RECIPES_DIR / "minimal.yaml").read_text())
        recipe["tokenizer"]["model"] = "pkg:models/tokenizer/foundry-sp32k-v1.model"
        recipe["shards"] = {**recipe.get("shards", {}), "max_tokens": 20_000, "timeout_s": 1.0}
        (tmp / "recipe.yaml").write_text(yaml.safe_dump(recipe))
        self.config = tmp / "factory.yaml"
        self.config.write_text(yaml.safe_dump({
            "run_dir": str(self.run_dir), "out": str(self.out), "bootstrap": bootstrap, "kafka_home": None,
            "namespace": namespace, "raw_topic": self.raw_topic, "recipe": str(tmp / "recipe.yaml"),
            "trainer": trainer or {"enabled": False}, "budget": {"enabled": False}, "metrics_port": 0,
            "restart": {"backoff_initial_s": 0.5, "backoff_max_s": 4.0}, "drain_timeout_s": 300,
            "sources": [{"kind": "generator", "name": "gen", "rate": rate, "n_docs": n_docs, "seed": 7}]}))

    def up(self) -> None:
        res = foundry("up", "--config", str(self.config), "--detach")
        assert res.returncode == 0, res.stdout + res.stderr

    def ps(self) -> dict:
        res = foundry("ps", "--run-dir", str(self.run_dir), "--json")
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    def process(self, name: str) -> dict | None:
        return next((p for p in self.ps()["processes"] if p["name"] == name), None)

    def running(self, name: str, min_restarts: int = 0) -> dict | None:
        p = self.process(name)
        return p if p and p["state"] == "running" and p["restarts"] >= min_restarts and p["pid"] else None

    def signal(self, name: str, sig: int) -> dict:
        p = wait_for(lambda: self.running(name), 90, f"{name} running")
        os.killpg(p["pid"], sig)
        return p

    def kill_and_wait_restart(self, name: str) -> None:
        p = self.signal(name, signal.SIGKILL)
        wait_for(lambda: self.running(name, p["restarts"] + 1), 120, f"{name} restarted after SIGKILL")

    def down_and_audit(self) -> dict:
        """`foundry down` (drains), then the summary and `foundry audit` on the output."""
        down = foundry("down", "--run-dir", str(self.run_dir), timeout=600)
        assert down.returncode == 0, down.stdout + down.stderr + self.log_tail()
        summary = json.loads((self.run_dir / "summary.json").read_text())
        assert summary["drained"], summary
        assert summary["accounted"] == summary["docs_in"] > 0, summary
        report = audit_output(summary["out_dir"], bootstrap=self.bootstrap, raw_topic=self.raw_topic)
        assert report.ok, report.text()
        return summary

    def log_tail(self, n: int = 3000) -> str:
        log = self.run_dir / "supervisor.log"
        return "\n--- supervisor.log:\n" + (log.read_text()[-n:] if log.exists() else "(none)")


def pause(rng: random.Random, lo: float = 1.0, hi: float = 5.0) -> None:
    time.sleep(rng.uniform(lo, hi))
