"""The factory, closed, against the real broker: a shortened demo runs every process of the loop
(sources arriving over time, a stream worker, the sinks, the continuous trainer, the budget agent),
stops them in order, and leaves the loop's figures; the budgets it made were applied by the worker,
a low-value source ended with a lower keep rate than a real-text source, and every raw document
is in exactly one shard or one ledger row."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from foundry.audit import audit_output
from foundry.demo import demo_config, reset_demo
from foundry.factory import Factory
from tests.conftest import shared_data

pytestmark = pytest.mark.kafka

SECONDS = 100  # of arriving sources at least; with start-up and the drain the test takes three minutes or more
REAL = ("web", "zhwiki")
LOW_VALUE = ("forum", "synthetic", "boilerplate", "repeated")  # forum: the near-duplicate flood


def _stop_when_budgets_moved(factory: Factory, budgets: Path, versions: int = 3, most_s: float = 420.0) -> None:
    """Stop the factory once the sources have arrived for SECONDS and the budget agent has published
    ``versions`` budgets (a slow machine needs longer for the trainer's first value scores), or after
    ``most_s`` whatever happened."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < most_s:
        try:
            seen = len(budgets.read_text().splitlines())
        except OSError:
            seen = 0
        if time.monotonic() - t0 >= SECONDS and seen >= versions:
            break
        time.sleep(1.0)
    factory.stop_requested.set()


def test_the_loop_prunes_the_live_stream(kafka_bootstrap, unique_name, tmp_path):
    data = shared_data()
    cfg = demo_config(SECONDS, data=data, bootstrap=kafka_bootstrap, kafka_home=None,
                      run_dir=str(tmp_path / "run"), out=str(tmp_path / "out"), namespace=unique_name,
                      raw_topic=f"foundry.{unique_name}.raw", metrics_port=0)
    cfg.trainer.nice = 0  # on a loaded machine a niced trainer can starve: the loop needs its steps
    reset_demo(cfg)
    factory = Factory(cfg, echo=print)
    threading.Thread(target=_stop_when_budgets_moved, args=(factory, tmp_path / "run" / "budgets.jsonl"),
                     daemon=True).start()
    summary = factory.run()
    print(json.dumps({k: v for k, v in summary.items() if k != "by_source"}, indent=1))

    assert summary["drained"] and summary["docs_in"] > 500
    assert summary["accounted"] == summary["docs_in"]
    assert all(n == 0 for n in summary["restarts"].values()), summary["restarts"]
    report = audit_output(summary["out_dir"], bootstrap=kafka_bootstrap, raw_topic=cfg.raw_topic)
    assert report.ok, report.text()
    assert report.raw_checked == summary["docs_in"]

    t = summary["trainer"]
    assert t["steps"] > 0 and t["heldout_loss_last"] is not None
    b = summary["budget"]
    assert b["versions_published"] >= 2
    assert len(b["versions_applied"]) >= 2, b  # budget versions recorded on the worker's verdicts
    assert b["docs_pruned"] > 0

    last = {s: r["last"] for s, r in b["keep_rate_over_time"].items()}
    best_real = max(last[s] for s in REAL if s in last)
    worst_low = min(last[s] for s in LOW_VALUE if s in last)
    assert worst_low < best_real, last
    assert "forum" in b["flagged"]  # the flood half way through is caught by the rejections it causes

    state = json.loads((tmp_path / "run" / "ps.json").read_text())
    assert state["phase"] == "stopped"
    assert {p["state"] for p in state["processes"]} == {"stopped"}
    assert (tmp_path / "run" / "summary.json").exists()
