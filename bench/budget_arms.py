"""The budget benchmark's arms: one admission policy each, the same stream, the same trainer.

An arm decides which documents of the deduplicated stream become training shards:

* ``none``: every document.
* ``value``: the trainer's value scores drive :class:`BudgetAllocator`; each BudgetUpdate is
  applied by the ``budget_prune`` stage to the shards built next. ``value.every`` and
  ``value.direction_every`` set how much of the training is scored (the cheaper scorer scores
  a sample of steps; the allocator works per source and bucket from that sample).
* ``random``: each document kept with a fixed probability (a hash of its id): the value arm's
  overall keep rate.
* ``static``: the pipeline's ``density`` score, one fixed threshold chosen on the first 2,000
  documents so that the same share of tokens is kept.
* ``oracle``: a fixed per-source keep rate set with the labels: the real sources kept whole, the
  three generated low-value sources dropped. It is a label oracle, not a searched optimum.

Every arm trains the same number of steps on the same trainer config (the fixed schedule) and
the same trainer-side repeat skip, so the arms differ only in what they admit and in what value
scoring costs. Only the value arms score (a system without budgets pays for no scoring).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.budget_stream import LOW_VALUE_KINDS, Doc
from schemas import CuratedDocument, Rejection, ValueScore
from streams.budget.allocator import AllocatorConfig, BudgetAllocator
from streams.budget.reader import StaticBudgetProvider
from streams.stages.budget_prune import BudgetPruneStage

REAL_SOURCES = ("web", "zhwiki", "reviews", "forum")


@dataclass
class Arm:
    name: str
    policy: str  # none | value | random | static | oracle
    value_every: int = 1
    direction_every: int = 20
    keep_rate: float | None = None  # random / static: set from the reference value arm


class Feedback:
    """The trainer's value publisher: scores go to the allocator, windows close, budgets apply."""

    def __init__(self, allocator: BudgetAllocator, window_tokens: int, provider: StaticBudgetProvider | None):
        self.allocator, self.window_tokens, self.provider = allocator, window_tokens, provider
        self.records: list[ValueScore] = []
        self.updates: list[dict[str, Any]] = []

    def publish(self, records: list[ValueScore]) -> None:
        self.records.extend(r for r in records if not r.doc_id.startswith("aggregate:"))
        self.allocator.observe_all(records)
        if self.allocator.pending_tokens >= self.window_tokens:
            upd = self.allocator.close_window()
            if upd is None:
                return
            rep = self.allocator.report()
            self.updates.append({"version": upd.budget_version, "weights": dict(upd.weights),
                                 "flagged": list(upd.flagged), "flags": rep.get("flags", {})})
            if self.provider is not None:
                self.provider.set(upd)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _unit(text: str) -> float:
    return int(hashlib.blake2b(text.encode(), digest_size=8).hexdigest(), 16) / 2.0 ** 64


class Admission:
    """One arm's verdict on the documents of the next shard; times what it costs (curation CPU)."""

    def __init__(self, arm: Arm, stream: list[Doc], stage: BudgetPruneStage | None, seed: int):
        self.arm, self.stage, self.seed = arm, stage, seed
        self.seconds = 0.0
        self.threshold = None
        self.scorer = None
        if arm.policy == "static":
            from streams.stages.density import DensityScorer

            self.scorer = DensityScorer()
            t0 = time.process_time()
            sample = stream[:2000]
            scores = np.array(self.scorer.score_texts([d.text for d in sample]))
            weights = np.array([len(d.tokens) for d in sample], float)
            order = np.argsort(-scores)  # keep the highest scores until the keep rate's share of tokens
            cum = np.cumsum(weights[order]) / weights.sum()
            self.threshold = float(scores[order][min(np.searchsorted(cum, arm.keep_rate), len(order) - 1)])
            self.seconds += time.process_time() - t0

    def admit(self, docs: list[Doc]) -> tuple[list[Doc], list[Rejection]]:
        t0 = time.process_time()
        p = self.arm.policy
        if p == "none":
            kept = docs
        elif p == "random":
            kept = [d for d in docs if _unit(f"{self.seed}:{d.id}") < self.arm.keep_rate]
        elif p == "oracle":
            kept = [d for d in docs if d.source in REAL_SOURCES]
        elif p == "static":
            scores = self.scorer.score_texts([d.text for d in docs]) if docs else []
            kept = [d for d, s in zip(docs, scores) if s >= self.threshold]
        else:
            by_id = {d.id: d for d in docs}
            cds = [CuratedDocument(id=d.id, text=d.text, source=d.source, lang=d.lang, content_hash=d.hash,
                                   recipe_version="bench") for d in docs]
            outcomes = self.stage.process_batch(cds)
            self.seconds += time.process_time() - t0
            return [by_id[o.id] for o in outcomes if not isinstance(o, Rejection)], \
                [o for o in outcomes if isinstance(o, Rejection)]
        self.seconds += time.process_time() - t0
        return kept, []


class StreamFeed:
    """A ShardFeed that builds the next shard from the stream when the trainer is about to need it."""

    def __init__(self, stream: list[Doc], heldout: list[Doc], work: Path, vocab_size: int, *,
                 admission: Admission, allocator: BudgetAllocator, raw_tokens_per_shard: int, ahead: int = 2):
        self.stream, self.heldout, self.work = stream, heldout, work
        self.vocab_size, self.admission, self.allocator = vocab_size, admission, allocator
        self.raw_tokens_per_shard, self.ahead = raw_tokens_per_shard, ahead
        self.trainer = None
        self.pos = 0  # next stream index
        self.offset = 0  # feed offset of the next shard
        self.seen_hashes: set[str] = set()
        self.kept_tokens: Counter = Counter()  # by kind (real sources by source name)
        self.rejections: list[Rejection] = []
        self.raw_tokens_read = 0
        self.unique_tokens_read = 0  # after dedup: what an admission policy chooses from
        self.heldout_path: str | None = None
        self.exhausted = False

    def _write(self, docs: list[Doc]):
        from trainer.synthetic_shards import SyntheticDoc, write_shard

        sd = [SyntheticDoc(tokens=d.tokens, id=d.id, source=d.source, lang=d.lang,
                           meta={"kind": d.kind, "content_hash": d.hash}) for d in docs]
        return write_shard(self.work / "data", sd, vocab_size=self.vocab_size, first_offset=self.offset * 100_000)

    def _next_shard(self):
        from trainer.shard_feed import FeedItem

        while True:
            batch: list[Doc] = []
            raw = 0
            while raw < self.raw_tokens_per_shard and self.pos < len(self.stream):
                d = self.stream[self.pos]
                self.pos += 1
                raw += len(d.tokens)
                batch.append(d)
            if not batch:
                self.exhausted = True
                return None
            self.raw_tokens_read += raw
            unique = []
            for d in batch:
                if d.hash in self.seen_hashes:  # the dedup agent's verdict
                    rej = Rejection(id=d.id, reason="duplicate", stage="dedup", recipe_version="bench",
                                    source=d.source, n_bytes=len(d.text.encode("utf-8")))
                    self.rejections.append(rej)
                    self.allocator.observe_rejection(rej)
                    continue
                self.seen_hashes.add(d.hash)
                unique.append(d)
                self.unique_tokens_read += len(d.tokens)
            kept, rejected = self.admission.admit(unique)
            self.rejections.extend(rejected)
            for d in kept:
                self.kept_tokens[d.source if d.kind == "real" else d.kind] += len(d.tokens)
            if kept:
                item = FeedItem(self.offset, self._write(kept))
                self.offset += 1
                return item

    def pending(self) -> int:
        s = self.trainer.session if self.trainer is not None else None
        if s is None or s.stream is None:
            return self.offset - (1 if self.heldout_path else 0)
        return s.log.n_train - s.stream.pos.next_new

    def poll(self, timeout: float):
        from trainer.shard_feed import FeedItem

        items = []
        if self.heldout_path is None:
            m = self._write(self.heldout)
            self.heldout_path = m.path
            items.append(FeedItem(self.offset, m))
            self.offset += 1
        n_new = 0
        while not self.exhausted and self.pending() + n_new < self.ahead:
            item = self._next_shard()
            if item is None:
                break
            items.append(item)
            n_new += 1
        return items

    def seek(self, next_offset: int) -> None:
        pass

    def close(self) -> None:
        pass

    def keep_rate(self) -> float:
        return sum(self.kept_tokens.values()) / max(self.unique_tokens_read, 1)

    def low_value_share(self) -> float:
        total = sum(self.kept_tokens.values())
        return sum(self.kept_tokens[k] for k in LOW_VALUE_KINDS) / max(total, 1)


def trainer_config(args, arm: Arm, probe_rows: int):
    from trainer.config import load_config

    scored = arm.policy == "value"
    return load_config("tiny", {
        "model": {"n_layer": 2, "n_head": 2, "n_embd": args.n_embd, "block_size": 64},
        "data": {"micro_batch_rows": 16, "replay_shards": 4, "heldout_from": "first_shards", "heldout_shards": 1,
                 "heldout_max_rows": args.eval_rows, "loader_workers": 1, "prefetch_rows": 64,
                 "verify_sha256": False, "max_doc_tokens": 2048, "skip_repeats_k": args.skip_k},
        "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 50, "decay": "cosine", "decay_steps": args.steps},
        "eval": {"every": args.eval_every}, "checkpoint": {"every": 0}, "export": {"every": 0},
        "value": {"enabled": scored, "every": arm.value_every, "direction_every": arm.direction_every,
                  "probe_rows": probe_rows, "difference": "forward", "publish_every": 10},
        # the fixed schedule in every arm: no skipped steps, no batch growth, so a step is 1024 tokens
        "adaptive": {"enabled": False},
        "log_every": 0, "torch_threads": args.threads, "device": getattr(args, "device", "cpu")})


def run_arm(arm: Arm, args, stream: list[Doc], heldout: list[Doc], probe_rows: int, vocab_size: int, work: Path,
            *, seed: int, stage_params: dict[str, Any]) -> dict[str, Any]:
    from trainer.loop import Trainer

    cfg = trainer_config(args, arm, probe_rows)
    alloc = BudgetAllocator(AllocatorConfig(**args.alloc))
    provider = StaticBudgetProvider() if arm.policy == "value" else None
    stage = BudgetPruneStage(provider, **stage_params) if provider is not None else None
    admission = Admission(arm, stream, stage, seed)
    run_dir = work / arm.name
    shutil.rmtree(run_dir, ignore_errors=True)
    feed = StreamFeed(stream, heldout, run_dir, vocab_size, admission=admission, allocator=alloc,
                      raw_tokens_per_shard=args.shard_tokens)
    # the window counts scored tokens: a sampled scorer sees 1/every of them, so its windows are smaller
    pub = Feedback(alloc, max(args.window_tokens // arm.value_every, 1000), provider)
    trainer = Trainer(cfg, run_dir, feed, pub, max_steps=args.steps, final_checkpoint=False)
    feed.trainer = trainer
    t0, c0 = time.perf_counter(), time.process_time()
    summary = trainer.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    events = []
    for f in (run_dir / "runs").glob("*/events.jsonl"):
        events += [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    evals = sorted((e for e in events if e.get("event") == "eval"), key=lambda e: e["step"])
    held = [e for e in events if e.get("event") == "heldout"]
    s = trainer.session
    last = pub.updates[-1]["weights"] if pub.updates else {}
    return {
        "arm": arm.name, "policy": arm.policy, "value_every": arm.value_every, "seed": seed,
        "steps": summary.final_step, "train_tokens": s.train_tokens, "train_flops": float(s.train_flops),
        "score_flops": float(s.score_flops), "total_flops": float(s.train_flops + s.score_flops),
        "wall_s": wall, "cpu_s": cpu, "curation_cpu_s": admission.seconds,
        "curve": [(e["step"], e["train_tokens"], e["train_flops"], e.get("score_flops", 0.0), e["heldout_loss"])
                  for e in evals],
        "final_loss": evals[-1]["heldout_loss"] if evals else float("nan"),
        "keep_rate": feed.keep_rate(), "low_value_share": feed.low_value_share(),
        "kept_tokens": dict(feed.kept_tokens), "raw_tokens_read": feed.raw_tokens_read,
        "budget_versions": len(pub.updates), "scored_docs": len(pub.records),
        "last_weights": {k: round(v, 3) for k, v in last.items() if "|" not in k},
        "flags": sorted({(src, tuple(r)) for u in pub.updates for src, r in u["flags"].items()}),
        "heldout": held[0] if held else {}, "static_threshold": admission.threshold,
        "repeat_tokens_skipped": s.position.repeat_tokens_skipped if s.position else 0,
        "params": s.model.n_params(), "flops_per_token": s.flops_per_token,
    }
