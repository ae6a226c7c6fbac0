"""Events of a run (train progress, evaluations, spikes and responses, checkpoints,
exports, skipped shards) as JSON lines, and a short line on the console for the notable ones."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from telemetry.metrics import observe_trainer_event

CONSOLE = {"run_start", "run_end", "eval", "spike", "skip_batch", "lr_backoff", "batch_grow", "rollback",
           "rollback_unavailable", "rebaseline", "weights_ok", "checkpoint", "resume", "export", "export_failed",
           "shard_skipped", "manifest_skipped", "tokenizer_switch", "train", "stop", "heldout"}


class EventLog:
    def __init__(self, path: Path | None, echo: Callable[[str], None] | None = None):
        self.path = path
        self.echo = echo
        self._fh = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(path, "a", encoding="utf-8")
        self.counts: dict[str, int] = {}
        self.recent: list[dict[str, Any]] = []  # kept in memory for tests and benchmarks

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        rec = {"event": event, "time": round(time.time(), 3), **fields}
        self.counts[event] = self.counts.get(event, 0) + 1
        observe_trainer_event(event, fields)
        self.recent.append(rec)
        if len(self.recent) > 10000:
            del self.recent[:5000]
        if self._fh is not None:
            self._fh.write(json.dumps(rec, default=str) + "\n")
            self._fh.flush()
        if self.echo is not None and event in CONSOLE:
            body = " ".join(f"{k}={_short(v)}" for k, v in fields.items())
            self.echo(f"[{event}] {body}")
        return rec

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
