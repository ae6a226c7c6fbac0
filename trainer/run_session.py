"""One training run: one tokenizer version, one model, its data position and its checkpoints.

A run lives in ``{run_dir}/runs/{name}/`` (``run.json``, ``checkpoints/``,
``events.jsonl``). Its name is fixed by where it started in the shards feed and
its tokenizer, so a restart finds the same run again.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from trainer.batching import Batch, RowPrefetcher, collate
from trainer.checkpoint import CheckpointStore, atomic_write_bytes
from trainer.config import TrainerConfig
from trainer.evaluation import HeldoutSets, heldout_loss, heldout_sets
from trainer.event_log import EventLog
from trainer.export import export_onnx
from trainer.model import GPT, configure_optimizer, token_losses
from trainer.schedule import AdaptiveSchedule
from trainer.shard_reader import ShardReader
from trainer.shard_stream import ManifestEntry, ManifestLog, Row, RowStream, StreamPosition
from trainer.value import ValueLedger, ValueScorer
from trainer.value_publisher import ValuePublisher


@dataclass
class RunInfo:
    name: str
    tokenizer_version: str
    vocab_size: int
    start_offset: int

    @staticmethod
    def new(start_offset: int, tokenizer_version: str, vocab_size: int) -> "RunInfo":
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", tokenizer_version)[:40] or "tok"
        return RunInfo(f"r{start_offset:09d}-{slug}-v{vocab_size}", tokenizer_version, vocab_size, start_offset)


def pick_device(want: str) -> torch.device:
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def batch_digest(batch: Batch) -> str:
    return hashlib.blake2b(batch.tokens.numpy().tobytes(), digest_size=8).hexdigest()


class RunSession:
    def __init__(self, cfg: TrainerConfig, info: RunInfo, run_dir: Path, export_dir: Path,
                 publisher: ValuePublisher, echo: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.info = info
        self.root = Path(run_dir) / "runs" / info.name
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / "run.json").exists():
            atomic_write_bytes(self.root / "run.json", (json.dumps(asdict(info), indent=2) + "\n").encode())
        self.export_dir = Path(export_dir)
        self.publisher = publisher
        self.events = EventLog(self.root / "events.jsonl", echo)
        self.device = pick_device(cfg.device)
        self.autocast = self.device.type == "cuda" and cfg.bf16
        self.sep_id = info.vocab_size  # the document-boundary token
        torch.manual_seed(cfg.data.seed)
        self.model = GPT(cfg.model, info.vocab_size + 1).to(self.device)
        self.forward_model = torch.compile(self.model) if cfg.compile else self.model
        o = cfg.optim
        self.optimizer = configure_optimizer(self.model, o.lr, o.weight_decay, (o.beta1, o.beta2), self.device.type)
        self.schedule = AdaptiveSchedule(o, cfg.adaptive)
        self.store = CheckpointStore(self.root / "checkpoints", cfg.checkpoint.keep)
        self.ledger = ValueLedger()
        self.step = 0
        self.train_tokens = 0
        self.train_flops = 0
        # value scoring's own compute, beside training's: its extra forward passes (a third of a
        # training token's FLOPs each) and the probe's forward + backward at every direction refresh
        self.score_flops = 0
        self.flops_per_token = self.model.flops_per_token()
        self.log = ManifestLog(cfg.data.heldout_shard_count())
        self.next_offset = info.start_offset
        self.position: StreamPosition | None = None  # after the last trained batch
        self.reader = ShardReader(workers=cfg.data.loader_workers, kind=cfg.data.loader_kind,
                                  capacity=cfg.data.replay_shards + cfg.data.heldout_shards
                                  + cfg.data.loader_workers + 4,
                                  verify_sha256=cfg.data.verify_sha256, vocab_size=info.vocab_size,
                                  max_doc_tokens=cfg.data.max_doc_tokens, skip_repeats_k=cfg.data.skip_repeats_k,
                                  reserve_below=cfg.data.reserved_fraction())
        self.stream: RowStream | None = None
        self.prefetcher: RowPrefetcher | None = None
        self.heldout: HeldoutSets | None = None  # probe rows (steer) and evaluation rows (measure)
        self._heldout_retry = 0  # step at which a reserved set that is not full yet is rebuilt
        self._heldout_builds = 0
        self.scorer: ValueScorer | None = None
        self._window = {"t0": time.perf_counter(), "wait0": 0.0, "tokens": 0, "loss": 0.0, "n": 0}
        self.resumed_from: int | None = None
        self.good_probe_loss: float | None = None  # probe loss at the last healthy checkpoint

    # -- lifecycle ------------------------------------------------------------------------
    def resume(self) -> bool:
        """Load the newest checkpoint, if any. Returns whether there was one."""
        state = self.store.load_latest()
        if state is None:
            return False
        self._load_weights(state)
        self.schedule.load_state_dict(state["schedule"])
        self.ledger.load_state_dict(state["ledger"])
        self.step, self.train_tokens, self.train_flops = state["step"], state["train_tokens"], state["train_flops"]
        self.score_flops = state.get("score_flops", 0)
        self.log = ManifestLog.from_state(state["manifests"])
        self.next_offset = state["next_offset"]
        self.position = StreamPosition.from_dict(state["stream"])
        self.good_probe_loss = state.get("good_probe_loss")
        if state.get("heldout") is not None:  # the same rows as before the restart
            h = state["heldout"]
            self.heldout = HeldoutSets(h["probe"], h["eval"], h.get("probe_docs", 0), h.get("eval_docs", 0))
        torch.set_rng_state(state["rng"]["torch"])
        if torch.cuda.is_available() and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        self.resumed_from = self.step
        self.events.emit("resume", run=self.info.name, step=self.step, next_offset=self.next_offset,
                         train_tokens=self.train_tokens)
        return True

    def _load_weights(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def start(self) -> None:
        d = self.cfg.data
        self.stream = RowStream(self.log, self.reader, block_size=self.cfg.model.block_size, sep_id=self.sep_id,
                                seed=d.seed, new_fraction=d.new_fraction, replay_shards=d.replay_shards,
                                idle_round_docs=d.idle_round_docs, replay_when_idle=d.replay_when_idle,
                                lookahead=max(d.loader_workers, 1), position=self.position)
        self.prefetcher = RowPrefetcher(self.stream, d.prefetch_rows)
        self.events.emit("run_start", run=self.info.name, tokenizer_version=self.info.tokenizer_version,
                         vocab_size=self.info.vocab_size, params=self.model.n_params(), device=str(self.device),
                         step=self.step)

    def accept(self, offset: int, entry: ManifestEntry | None) -> None:
        """An announcement from the feed for this run (None: a message that was skipped)."""
        if entry is not None:
            kind = self.log.append(entry)
            self.events.emit("manifest", offset=offset, shard=entry.manifest.shard, role=kind)
        self.next_offset = max(self.next_offset, offset + 1)

    def caught_up(self, starving: bool = False) -> bool:
        """Every announced training shard has been trained (its round has been passed)."""
        pos = self.position
        if self.log.n_train == 0:
            return True
        if pos is None or pos.next_new < self.log.n_train:
            return False
        return pos.round_new is None or starving

    def take_rows(self, poll: Callable[[], bool]) -> list[Row] | None:
        return self.prefetcher.take(self.cfg.data.micro_batch_rows * self.schedule.batch_mult, poll)

    # -- one step -------------------------------------------------------------------------
    def _heldout_growing(self) -> bool:
        """A reserved held-out set is rebuilt (every ``eval.every`` steps, or 50 with evaluation off) until its
        rows are full: at the first step only a shard or two may have been announced."""
        h, d = self.heldout, self.cfg.data
        if h is None or d.heldout_from != "reserved" or self.step < self._heldout_retry or self._heldout_builds >= 20:
            return False  # (after 20 tries a source that never supplies its share leaves the set as it is)
        return h.probe.shape[0] < self.cfg.value.probe_rows or h.eval.shape[0] < d.heldout_max_rows

    def _ensure_heldout(self) -> None:
        if self.heldout is None or self._heldout_growing():
            self._heldout_retry = self.step + (self.cfg.eval.every if self.cfg.eval.every > 0 else 50)
            self._heldout_builds += 1
            self.scorer = None  # its probe rows change with the set
            d = self.cfg.data
            entries = self.log.heldout if d.heldout_from == "first_shards" else self.log.train_entries()
            self.heldout = heldout_sets(entries, self.reader, d, block_size=self.cfg.model.block_size,
                                        sep_id=self.sep_id, probe_rows=self.cfg.value.probe_rows)
            self.events.emit("heldout", heldout_from=d.heldout_from, shards=[e.manifest.shard for e in entries],
                             probe_rows=int(self.heldout.probe.shape[0]), probe_docs=self.heldout.probe_docs,
                             eval_rows=int(self.heldout.eval.shape[0]), eval_docs=self.heldout.eval_docs)
        if self.scorer is None and self.cfg.value.enabled and self.heldout.probe.shape[0] > 0:
            self.scorer = ValueScorer(self.model, self.heldout.probe.to(self.device), self.cfg.value.epsilon)

    def train_step(self, rows: list[Row]) -> dict[str, Any]:
        self._ensure_heldout()
        batch = collate(rows)
        cfg = self.cfg
        step = self.step
        lr = self.schedule.lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        micro = cfg.data.micro_batch_rows
        loss_sum, n_targets = 0.0, 0
        keep_base = cfg.value.difference == "forward" and not self.autocast
        bases: list[torch.Tensor | None] = []
        for i in range(0, batch.rows, micro):
            chunk = batch.tokens[i:i + micro].to(self.device, non_blocking=True)
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                losses = token_losses(self.forward_model, chunk)
            (losses.sum() / (batch.rows * losses.shape[1])).backward()
            loss_sum += float(losses.detach().double().sum())
            n_targets += losses.numel()
            bases.append(losses.detach() if keep_base else None)
        loss = loss_sum / n_targets
        decision = self.schedule.observe(step, loss)
        for ev in decision.events:
            self.events.emit(ev.pop("event"), **ev)
        if decision.skip:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            if self.scorer is not None and step % cfg.value.every == 0:
                if self.scorer.direction is None or step % cfg.value.direction_every == 0:
                    self.scorer.refresh_direction()
                    self.score_flops += self.scorer.probe.shape[0] * (self.scorer.probe.shape[1] - 1) \
                        * self.flops_per_token
                for k, i in enumerate(range(0, batch.rows, micro)):
                    part = Batch(batch.tokens[i:i + micro], batch.target_doc[i:i + micro], batch.docs,
                                 batch.position)
                    sums, counts = self.scorer.score(part, bases[k])
                    self.ledger.add_partial(part, sums, counts)
                    passes = 1 if bases[k] is not None else 2
                    self.score_flops += passes * part.tokens.shape[0] * (part.tokens.shape[1] - 1) \
                        * self.flops_per_token // 3
            if self.scorer is not None:  # with value.every > 1 a document may end in an unscored step
                self.ledger.close_batch(batch, step)
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            n_tok = batch.rows * (batch.tokens.shape[1] - 1)
            self.train_tokens += n_tok
            self.train_flops += n_tok * self.flops_per_token
            self._window["tokens"] += n_tok
        if decision.check_weights:
            self._check_weights()
        self.position = batch.position
        self.step += 1
        self._window["loss"] += loss
        self._window["n"] += 1
        return {"loss": loss, "lr": lr, "skipped": decision.skip, "batch": batch}

    def probe_loss(self) -> float | None:
        """Loss on the probe rows (what steers training; never the evaluation rows)."""
        self._ensure_heldout()
        if self.heldout.probe.shape[0] == 0:
            return None
        return heldout_loss(self.model, self.heldout.probe,
                            micro_batch_rows=self.cfg.data.micro_batch_rows, device=self.device,
                            autocast=self.autocast)

    def _check_weights(self) -> None:
        """Spikes in a row: bad weights (roll back) or bad batches (keep skipping them)?"""
        now, ref = self.probe_loss(), self.good_probe_loss
        if now is None or ref is None:
            self.events.emit("rollback_unavailable", step=self.step, probe_loss=now, good_probe_loss=ref)
            return
        if now <= ref * (1.0 + self.cfg.adaptive.min_rel_rise):
            self.events.emit("weights_ok", step=self.step, probe_loss=now, good_probe_loss=ref)
            return
        state = self.store.load_good()
        if state is None:
            self.events.emit("rollback_unavailable", step=self.step, probe_loss=now, good_probe_loss=ref)
            return
        self._load_weights(state)
        if self.scorer is not None:
            self.scorer.direction = None
        self.events.emit("rollback", step=self.step, to_step=state["step"], probe_loss=now, good_probe_loss=ref)

    # -- periodic work --------------------------------------------------------------------
    def model_version(self) -> str:
        return f"{self.info.name}-s{self.step:09d}"

    def after_step(self, out: dict[str, Any]) -> None:
        cfg, step = self.cfg, self.step  # ``step`` counts the steps done
        if cfg.log_every and step % cfg.log_every == 0:
            self._log_window(out)
        if cfg.eval.every and step % cfg.eval.every == 0:
            self.evaluate()
        if cfg.value.publish_every and step % cfg.value.publish_every == 0:
            self.publish_values()
        if cfg.checkpoint.every and step % cfg.checkpoint.every == 0:
            self.checkpoint()
        if cfg.export.every and step % cfg.export.every == 0:
            self.export()

    def _log_window(self, out: dict[str, Any]) -> None:
        w = self._window
        now = time.perf_counter()
        wait = self.prefetcher.wait_s if self.prefetcher else 0.0
        elapsed = max(now - w["t0"], 1e-9)
        self.events.emit("train", step=self.step, loss=w["loss"] / max(w["n"], 1), lr=out["lr"],
                         batch_rows=out["batch"].rows, tokens_per_s=w["tokens"] / elapsed,
                         data_wait_share=(wait - w["wait0"]) / elapsed, train_tokens=self.train_tokens,
                         digest=batch_digest(out["batch"]))
        self._window = {"t0": now, "wait0": wait, "tokens": 0, "loss": 0.0, "n": 0}

    def evaluate(self) -> float:
        self._ensure_heldout()
        loss = heldout_loss(self.model, self.heldout.eval, micro_batch_rows=self.cfg.data.micro_batch_rows,
                            device=self.device, autocast=self.autocast)
        self.events.emit("eval", step=self.step, heldout_loss=loss, train_tokens=self.train_tokens,
                         train_flops=float(self.train_flops), score_flops=float(self.score_flops))
        return loss

    def publish_values(self) -> int:
        records = self.ledger.drain(self.model_version())
        if records:
            self.publisher.publish(records)
        return len(records)

    def checkpoint(self) -> Path:
        self.publish_values()
        self.publisher.flush()  # the records of the steps a checkpoint covers are durable first
        if self.position is not None:  # the stream thread may be ahead; it never needs older shards
            self.log.prune(self.position.oldest_needed())
        state = {
            "info": asdict(self.info),
            "config": self.cfg.model_dump(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "ledger": self.ledger.state_dict(),
            "train_tokens": self.train_tokens,
            "train_flops": self.train_flops,
            "score_flops": self.score_flops,
            "manifests": self.log.state(),
            "next_offset": self.next_offset,
            "stream": (self.position or StreamPosition(rng_state=np.random.PCG64(self.cfg.data.seed).state)).to_dict(),
            "consumed_through_offset": self._consumed_through_offset(),
            "heldout": None if self.heldout is None else {
                "probe": self.heldout.probe.cpu(), "eval": self.heldout.eval.cpu(),
                "probe_docs": self.heldout.probe_docs, "eval_docs": self.heldout.eval_docs},
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                    "numpy": np.random.get_state(), "python": random.getstate()},
        }
        healthy = self.schedule.healthy(self.step)
        if healthy:
            self.good_probe_loss = self.probe_loss()
        state["good_probe_loss"] = self.good_probe_loss
        path = self.store.save(self.step, state, healthy)
        if self.scorer is not None:  # a resumed run refreshes it on its first step: do the same here
            self.scorer.direction = None
        self.events.emit("checkpoint", step=self.step, path=str(path), healthy=healthy,
                         next_offset=self.next_offset)
        return path

    def _consumed_through_offset(self) -> int | None:
        """Feed offset of the last shard whose training round has started (all before it are trained)."""
        pos = self.position
        if pos is None or pos.next_new == 0:
            return None
        try:
            return self.log.train_entry(pos.next_new - 1).offset
        except KeyError:
            return None

    def export(self) -> Path | None:
        meta = {"tokenizer_version": self.info.tokenizer_version, "vocab_size": self.info.vocab_size,
                "run": self.info.name, "step": self.step, "train_tokens": self.train_tokens}
        try:
            path = export_onnx(self.model, self.export_dir, self.model_version(), meta=meta,
                               opset=self.cfg.export.opset, check=self.cfg.export.check)
        except Exception as exc:  # noqa: BLE001 - a failed export must not stop training
            self.events.emit("export_failed", step=self.step, error=f"{type(exc).__name__}: {exc}")
            return None
        self.events.emit("export", step=self.step, path=str(path))
        return path

    def finish(self, reason: str, final_checkpoint: bool = True) -> None:
        if self.prefetcher is not None:
            self.prefetcher.close()
        if final_checkpoint and self.step > 0:
            steps = self.store.steps()
            if not steps or steps[-1] != self.step:
                self.checkpoint()
            if self.cfg.export.every and self.step % self.cfg.export.every != 0:
                self.export()
        self.publish_values()
        self.publisher.flush()
        pos = self.position
        self.events.emit("run_end", run=self.info.name, step=self.step, reason=reason,
                         train_tokens=self.train_tokens,
                         repeat_tokens_skipped=pos.repeat_tokens_skipped if pos else 0,
                         repeat_tokens_read=pos.repeat_tokens_read if pos else 0)
        self.reader.close()
        self.events.close()
