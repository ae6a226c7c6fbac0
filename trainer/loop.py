"""The continuous training loop: route shard announcements to the run, train, stop when told.

:class:`Trainer` owns the feed and the run directory. It resumes the current
run from its newest checkpoint, hands each announced shard to the run, and
calls the run's step until ``max_steps``, ``until_idle`` or a stop request.
A shard of another tokenizer version (or vocabulary size) ends the run once
every shard it already had is trained, and starts a new run (new model, new
held-out set) from that announcement on; shards of the version of an ended run
that arrive after the switch are skipped and logged.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainer.batching import Batch
from trainer.checkpoint import atomic_write_bytes
from trainer.config import TrainerConfig
from trainer.event_log import EventLog
from trainer.run_session import RunInfo, RunSession
from trainer.shard_feed import FeedItem, ShardFeed
from trainer.shard_stream import ManifestEntry
from trainer.value_publisher import ValuePublisher


@dataclass
class TrainSummary:
    runs: list[str] = field(default_factory=list)
    steps: int = 0  # steps done by this process
    final_step: int = 0
    train_tokens: int = 0
    last_heldout_loss: float | None = None
    stop_reason: str = ""
    seconds: float = 0.0
    data_wait_s: float = 0.0
    step_s: float = 0.0


class Trainer:
    def __init__(self, cfg: TrainerConfig, run_dir: str | Path, feed: ShardFeed, publisher: ValuePublisher, *,
                 export_dir: str | Path | None = None, max_steps: int | None = None,
                 until_idle: float | None = None, final_checkpoint: bool = True,
                 on_batch: Callable[[int, Batch, dict[str, Any]], None] | None = None,
                 echo: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.export_dir = Path(export_dir) if export_dir else self.run_dir / "export"
        self.feed = feed
        self.publisher = publisher
        self.max_steps = max_steps
        self.until_idle = until_idle
        self.final_checkpoint = final_checkpoint
        self.on_batch = on_batch
        self.echo = echo
        self.log = EventLog(self.run_dir / "trainer.jsonl", echo)
        self.session: RunSession | None = None
        self.pending: list[FeedItem] = []  # announcements for the next run, after a tokenizer switch
        self.retired: set[tuple[str, int]] = set()  # (tokenizer, vocab) of ended runs: their shards are skipped
        self.last_arrival = time.monotonic()
        self.stop_requested = False
        self.summary = TrainSummary()
        if cfg.torch_threads > 0:
            torch.set_num_threads(cfg.torch_threads)

    # -- runs -----------------------------------------------------------------------------
    def _current_name(self) -> str | None:
        try:
            return (self.run_dir / "CURRENT").read_text().strip() or None
        except OSError:
            return None

    def _open_session(self, info: RunInfo, seek: bool) -> RunSession:
        """Open (or resume) a run; the loop starts its data stream once the feed has been read."""
        atomic_write_bytes(self.run_dir / "CURRENT", (info.name + "\n").encode())
        session = RunSession(self.cfg, info, self.run_dir, self.export_dir, self.publisher, self.echo)
        session.resume()
        if seek:
            self.feed.seek(session.next_offset)
        self.summary.runs.append(info.name)
        self.session = session
        return session

    def _resume_current(self) -> None:
        name = self._current_name()
        for path in (self.run_dir / "runs").glob("*/run.json"):  # every other run has ended for good
            if path.parent.name != name:
                info = json.loads(path.read_text())
                self.retired.add((info["tokenizer_version"], info["vocab_size"]))
        if name is None:
            self.feed.seek(0)
            return
        meta = json.loads((self.run_dir / "runs" / name / "run.json").read_text())
        self._open_session(RunInfo(**meta), seek=True)

    # -- feed -----------------------------------------------------------------------------
    def _route(self, item: FeedItem) -> None:
        s = self.session
        if item.manifest is None:
            self.log.emit("manifest_skipped", offset=item.offset, reason=item.error)
            if s is not None and not self.pending:
                s.accept(item.offset, None)
            return
        m = item.manifest
        if (m.tokenizer_version, m.vocab_size) in self.retired:
            self.log.emit("manifest_skipped", offset=item.offset, shard=m.shard,
                          reason=f"tokenizer {m.tokenizer_version} (vocab {m.vocab_size}) belongs to an ended run")
            if s is not None and not self.pending:
                s.accept(item.offset, None)
            return
        if s is None:
            s = self._open_session(RunInfo.new(item.offset, m.tokenizer_version, m.vocab_size), seek=False)
        if self.pending:
            self.pending.append(item)
            return
        if (m.tokenizer_version, m.vocab_size) != (s.info.tokenizer_version, s.info.vocab_size):
            self.log.emit("tokenizer_switch", offset=item.offset, old=s.info.tokenizer_version,
                          new=m.tokenizer_version, vocab_size=m.vocab_size)
            self.pending.append(item)
            return
        s.accept(item.offset, ManifestEntry(item.offset, m))
        self.last_arrival = time.monotonic()

    def intake(self, timeout: float = 0.0) -> int:
        items = self.feed.poll(timeout)
        for item in items:
            self._route(item)
        return len(items)

    def _switch_run(self) -> None:
        old = self.session
        old.finish("tokenizer_switch", final_checkpoint=True)
        self.retired.add((old.info.tokenizer_version, old.info.vocab_size))
        self.session = None
        items, self.pending = self.pending, []
        for item in items:  # the first one of the new version opens the new run
            self._route(item)

    # -- stopping -------------------------------------------------------------------------
    def _idle(self, starving: bool) -> bool:
        if self.until_idle is None or self.pending:
            return False
        if time.monotonic() - self.last_arrival < self.until_idle:
            return False
        return self.session is None or self.session.caught_up(starving)

    def _poll_while_waiting(self) -> bool:
        """Called while the loop waits for rows: read the feed, say whether to stop waiting."""
        self.intake(0.05)
        if self.stop_requested or self._idle(starving=True):
            return True
        return bool(self.pending) and self.session.caught_up(starving=True)

    def request_stop(self) -> None:
        self.stop_requested = True

    # -- main -----------------------------------------------------------------------------
    def run(self) -> TrainSummary:
        t_start = time.perf_counter()
        self._resume_current()
        self.intake(0.5)
        reason = ""
        done = 0
        failed = True
        try:
            while True:
                if self.stop_requested:
                    reason = "stop requested"
                    break
                s = self.session
                if s is None:  # nothing announced yet
                    if self._idle(starving=True):
                        reason = "idle"
                        break
                    self.intake(0.2)
                    continue
                if self.max_steps is not None and s.step >= self.max_steps:
                    reason = "max_steps"
                    break
                if self.pending and s.caught_up(starving=False):
                    self._switch_run()
                    continue
                if s.prefetcher is None:
                    s.start()
                wait0 = s.prefetcher.wait_s
                rows = s.take_rows(self._poll_while_waiting)
                self.summary.data_wait_s += s.prefetcher.wait_s - wait0
                if rows is None:
                    if self.pending and s.caught_up(starving=True):
                        self._switch_run()
                        continue
                    reason = "stop requested" if self.stop_requested else "idle" if self._idle(True) else "stream ended"
                    break
                t0 = time.perf_counter()
                out = s.train_step(rows)
                if self.on_batch is not None:
                    self.on_batch(s.step - 1, out["batch"], out)
                s.after_step(out)
                self.summary.step_s += time.perf_counter() - t0
                done += 1
                self.intake(0.0)
                if self._idle(starving=False):
                    reason = "idle"
                    break
            failed = False
        finally:
            s = self.session
            if s is not None:
                self.summary.final_step = s.step
                self.summary.train_tokens = s.train_tokens
                keep = self.final_checkpoint and not failed  # never checkpoint a state an error left
                if keep and s.step > 0:
                    self.summary.last_heldout_loss = s.evaluate()
                s.finish(reason or "error", final_checkpoint=keep)
            self.log.emit("stop", reason=reason or "error", steps=done)
            self.log.close()
        self.summary.steps = done
        self.summary.stop_reason = reason
        self.summary.seconds = time.perf_counter() - t_start
        return self.summary
