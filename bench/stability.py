"""Fixed schedule against the adaptive one, on the same stream: loss spikes and final held-out loss.

    .venv/bin/python bench/stability.py [--steps 600] [--lr 0.02] [--json]

The stream is synthetic (a Markov "language", every ``--garbage-every``-th
shard random tokens) and the learning rate is set high enough that training
is unstable, so that there are spikes to count. Both runs see the same shards
in the same order with the same seed; the only difference is
``adaptive.enabled``. A spike is what the trainer's detector flags (loss more
than k noise-sigmas and 5 % above its running level); in the fixed run it is
only counted, in the adaptive run it is answered (skip, lr back-off, larger
batch, rollback). Value scoring and exports are off: they do not change the
training and only cost time here.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trainer.config import load_config  # noqa: E402
from trainer.loop import Trainer  # noqa: E402
from trainer.shard_feed import ListShardFeed  # noqa: E402
from trainer.synthetic_shards import make_stream  # noqa: E402
from trainer.value_publisher import MemoryValuePublisher  # noqa: E402


def run_one(manifests, work: Path, *, adaptive: bool, steps: int, lr: float, threads: int) -> dict:
    overrides = {
        "model": {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64},
        "data": {"micro_batch_rows": 8, "replay_shards": 4, "heldout_shards": 1, "heldout_max_rows": 32,
                 "loader_workers": 1},
        "optim": {"lr": lr, "min_lr": lr / 10, "warmup_steps": 50, "decay": "cosine", "decay_steps": steps,
                  "grad_clip": 0.0},
        "adaptive": {"enabled": adaptive, "min_history": 30, "plateau_window": 0},
        "eval": {"every": 0}, "checkpoint": {"every": 100, "keep": 2}, "export": {"every": 0},
        "value": {"enabled": False}, "log_every": 0, "torch_threads": threads,
    }
    cfg = load_config(None, overrides)
    run_dir = work / ("adaptive" if adaptive else "fixed")
    losses: list[float] = []
    trainer = Trainer(cfg, run_dir, ListShardFeed(manifests), MemoryValuePublisher(), max_steps=steps,
                      on_batch=lambda step, batch, out: losses.append(out["loss"]))
    t0 = time.perf_counter()
    summary = trainer.run()
    events = [json.loads(x) for x in next((run_dir / "runs").iterdir()).joinpath("events.jsonl")
              .read_text().splitlines()]
    count = {k: sum(e["event"] == k for e in events)
             for k in ("spike", "skip_batch", "lr_backoff", "batch_grow", "rollback", "weights_ok", "rebaseline")}
    spike_steps = sorted(e["step"] for e in events if e["event"] == "spike")
    episodes = sum(1 for i, s in enumerate(spike_steps) if i == 0 or s - spike_steps[i - 1] > 5)
    return {
        "schedule": "adaptive" if adaptive else "fixed",
        "steps": summary.final_step,
        "spikes": count["spike"],
        "spikes_per_10k_steps": 10_000 * count["spike"] / max(summary.final_step, 1),
        "spike_episodes_per_10k_steps": 10_000 * episodes / max(summary.final_step, 1),
        "final_heldout_loss": summary.last_heldout_loss,
        "train_tokens": summary.train_tokens,
        "responses": {k: v for k, v in count.items() if k != "spike"},
        "mean_train_loss_last_100": sum(losses[-100:]) / max(len(losses[-100:]), 1),
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--shards", type=int, default=60)
    ap.add_argument("--garbage-every", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="foundry-stability-"))
    try:
        manifests = make_stream(work / "data", n_shards=args.shards, docs_per_shard=40, vocab_size=512,
                                doc_len=(40, 200), seed=args.seed, garbage_every=args.garbage_every)
        results = [run_one(manifests, work, adaptive=a, steps=args.steps, lr=args.lr, threads=args.threads)
                   for a in (False, True)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fixed, adaptive = results
    reduction = (1 - adaptive["spikes_per_10k_steps"] / fixed["spikes_per_10k_steps"]
                 if fixed["spikes_per_10k_steps"] else float("nan"))
    if args.json:
        print(json.dumps({"runs": results, "spike_reduction": reduction}, indent=2))
        return
    print(f"{'schedule':<10} {'steps':>6} {'tokens':>9} {'spikes/10k':>11} {'episodes/10k':>13} "
          f"{'held-out loss':>14} {'s':>6}  responses")
    for r in results:
        print(f"{r['schedule']:<10} {r['steps']:>6} {r['train_tokens']:>9} {r['spikes_per_10k_steps']:>11.1f} "
              f"{r['spike_episodes_per_10k_steps']:>13.1f} {r['final_heldout_loss']:>14.4f} {r['seconds']:>6.1f}  "
              + " ".join(f"{k}={v}" for k, v in r["responses"].items()))
    print(f"spike reduction, adaptive vs fixed: {100 * reduction:.0f} % (the seed system claims 75 %)")


if __name__ == "__main__":
    main()
