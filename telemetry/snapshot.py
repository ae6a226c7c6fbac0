"""One picture of a running factory: the process table (``ps.json`` in the run folder)
joined with a scrape of every process's metrics port. ``foundry status`` renders it,
``foundry dashboard`` keeps a history of them."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from telemetry.scrape import Samples, scrape

STAGES = ("ingest", "curate")


def read_ps(run_dir: str | Path) -> dict[str, Any] | None:
    """The supervisor's process table, or None when there is none (yet)."""
    path = Path(run_dir) / "ps.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:  # written atomically, so this is a foreign or broken file
        raise ValueError(f"{path} is not a process table: {exc}") from None


def _nested(samples: Samples, name: str, outer: str, inner: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for labels, v in samples.get(name):
        if outer in labels and inner in labels:
            out.setdefault(labels[outer], {})[labels[inner]] = v
    return out


def _known(samples: Samples, name: str) -> float | None:
    """The value of an unlabelled gauge; None where no process has set it (NaN) or none exports it."""
    vals = [v for _, v in samples.get(name) if not math.isnan(v)]
    return max(vals) if vals else None


def collect(run_dir: str | Path, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-ready snapshot; ``previous`` (an earlier snapshot) gives the rates."""
    now = time.time()
    ps = read_ps(run_dir) or {"processes": []}
    merged = Samples()
    procs = []
    for p in ps.get("processes", []):
        port = p.get("metrics_port")
        s = scrape(port) if port else None
        if s is not None:
            merged = merged.merge(s)
        procs.append({**p, "scraped": s is not None,
                      "uptime_s": round(now - p["started"], 1) if p.get("started") else None})
    stages = {st: {"in": merged.total("foundry_docs_in_total", stage=st),
                   "kept": merged.total("foundry_docs_kept_total", stage=st),
                   "rejected": merged.total("foundry_docs_rejected_total", stage=st),
                   "bytes": merged.total("foundry_bytes_in_total", stage=st)} for st in STAGES}
    stages["publish"] = {"in": merged.total("foundry_source_docs_published_total"), "kept": 0.0,
                         "rejected": 0.0, "bytes": merged.total("foundry_source_bytes_published_total")}
    sinks = merged.by("foundry_sink_rows_total", "sink")
    snap = {
        "time": now,
        "run_dir": str(run_dir),
        "namespace": ps.get("namespace"),
        "out_dir": ps.get("out_dir"),
        "processes": procs,
        "stages": stages,
        "sinks": {"rows": sinks, "shards": merged.total("foundry_shards_total"),
                  "shard_bytes": merged.total("foundry_shard_bytes_total"),
                  "tokens": merged.total("foundry_shard_tokens_total")},
        "rejections": {r: n for r, n in sorted(merged.by("foundry_docs_rejected_total", "reason").items()) if n},
        "rejections_by_source": _nested(merged, "foundry_docs_rejected_total", "source", "reason"),
        "lag": _nested(merged, "foundry_consumer_lag", "topic", "partition"),
        "keep_rate": merged.by("foundry_keep_rate", "source"),
        "budgets": merged.by("foundry_budget_tokens", "key"),
        "budget_version": merged.total("foundry_budget_version"),
        "flagged": sorted(k for k, v in merged.by("foundry_source_flagged", "key").items() if v),
        "value_scores": merged.by("foundry_value_score", "source"),
        "trainer": {k: _known(merged, n) for k, n in (
            ("step", "foundry_trainer_step"), ("loss", "foundry_trainer_loss"),
            ("heldout_loss", "foundry_trainer_heldout_loss"), ("tokens", "foundry_trainer_tokens"),
            ("tokens_per_s", "foundry_trainer_tokens_per_second"))},
        "operators": {op: {"batches": n, "seconds": merged.total("foundry_operator_batch_seconds_sum", operator=op),
                           "cpu_s": merged.total("foundry_operator_cpu_seconds_total", operator=op),
                           "docs": merged.total("foundry_operator_docs_total", operator=op)}
                      for op, n in merged.by("foundry_operator_batch_seconds_count", "operator").items()},
    }
    snap["rates"] = rates(previous, snap)
    return snap


def rates(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, float]:
    """Documents per second per stage (and rows per second per sink) between two snapshots."""
    if not previous:
        return {}
    dt = current["time"] - previous["time"]
    if dt <= 0:
        return {}
    out = {st: max(0.0, (v["in"] - previous["stages"].get(st, {}).get("in", 0.0)) / dt)
           for st, v in current["stages"].items()}
    for sink, n in current["sinks"]["rows"].items():
        out[f"sink:{sink}"] = max(0.0, (n - previous["sinks"]["rows"].get(sink, 0.0)) / dt)
    return out
