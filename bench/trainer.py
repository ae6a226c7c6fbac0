"""Training throughput of ``foundry train`` and the share of step time spent waiting for data.

    .venv/bin/python bench/trainer.py [--config default] [--steps 40] [--set KEY=VALUE ...] [--json]

Synthetic shards with the project tokenizer's vocabulary size (32 000) are
all announced before the run starts ("once shards are available"). The
trainer runs ``--steps`` steps of the config; the first ``--warmup`` steps are
left out of the figures. After every trainer step a bare torch loop - the
same model, optimizer and batch shape, on the very same token tensor already
in memory, with no data pipeline, spike detector, value scoring or logging -
takes one step too; interleaving them means both see the same load when the
machine is shared. The ratio of the medians of the two step times is printed.
The trainer is measured with value scoring on (as configured) and off, so
the cost of the scores shows apart from the cost of the pipeline.

Model FLOPs utilization (MFU) = training tokens/s x the model's training FLOPs per
token (6N + attention, as the trainer counts them) / the device's peak: ``--peak-tflops``,
or on CUDA the dense bf16 peak of a known device (H100/H200 989, A100 312, L4 121,
A10G 70 TFLOP/s); none on CPU unless given. Value scoring's FLOPs are not in the numerator.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from foundry.cli_train import _overrides  # noqa: E402
from trainer.config import TrainerConfig, load_config  # noqa: E402
from trainer.loop import Trainer  # noqa: E402
from trainer.model import GPT, configure_optimizer, token_losses  # noqa: E402
from trainer.run_session import pick_device  # noqa: E402
from trainer.shard_feed import ListShardFeed  # noqa: E402
from trainer.synthetic_shards import make_stream  # noqa: E402
from trainer.value_publisher import MemoryValuePublisher  # noqa: E402


class BareLoop:
    """The same model and optimizer, stepping over token tensors already in memory, nothing else."""

    def __init__(self, cfg: TrainerConfig, vocab_size: int):
        self.device = pick_device(cfg.device)
        torch.manual_seed(0)
        self.model = GPT(cfg.model, vocab_size + 1).to(self.device)
        o = cfg.optim
        self.clip = o.grad_clip
        self.opt = configure_optimizer(self.model, o.lr, o.weight_decay, (o.beta1, o.beta2), self.device.type)
        self.autocast = self.device.type == "cuda" and cfg.bf16
        self.micro = cfg.data.micro_batch_rows

    def step(self, batch: torch.Tensor) -> float:
        """One training step on ``batch`` (already resident); returns its seconds."""
        t0 = time.perf_counter()
        rows = batch.shape[0]
        for j in range(0, rows, self.micro):
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                part = token_losses(self.model, batch[j:j + self.micro])
            (part.sum() / (rows * part.shape[1])).backward()
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def measure(cfg: TrainerConfig, manifests, work: Path, steps: int, warmup: int, vocab: int) -> dict:
    """Trainer steps and bare-loop steps on the same batch, interleaved, so that both see the
    same load on a shared machine. A trainer step's time runs from the end of the previous
    bare step to the end of this training step (so it includes waiting for data)."""
    bare = BareLoop(cfg, vocab)
    trainer: Trainer | None = None
    trainer_steps: list[tuple[float, float, int]] = []  # (seconds, data wait seconds, tokens)
    bare_steps: list[float] = []
    state = {"t": None, "wait": 0.0}

    def on_batch(step, batch, out):
        now = time.perf_counter()
        s = trainer.session
        if state["t"] is not None and not out["skipped"]:
            trainer_steps.append((now - state["t"], s.prefetcher.wait_s - state["wait"], batch.tokens[:, 1:].numel()))
        bare_steps.append(bare.step(batch.tokens.to(bare.device)))
        state["t"], state["wait"] = time.perf_counter(), s.prefetcher.wait_s

    trainer = Trainer(cfg, work, ListShardFeed(manifests), MemoryValuePublisher(), max_steps=steps,
                      on_batch=on_batch, final_checkpoint=False)
    trainer.run()
    measured, bare_measured = trainer_steps[warmup:], bare_steps[warmup + 1:]
    tokens_per_step = measured[0][2]
    seconds = sum(t for t, _, _ in measured)
    return {
        "tokens_per_s": sum(n for _, _, n in measured) / seconds,
        "median_tokens_per_s": tokens_per_step / statistics.median(t for t, _, _ in measured),
        "data_wait_share": sum(w for _, w, _ in measured) / seconds,
        "bare_tokens_per_s": tokens_per_step * len(bare_measured) / sum(bare_measured),
        "bare_median_tokens_per_s": tokens_per_step / statistics.median(bare_measured),
        "steps_measured": len(measured), "params": trainer.session.model.n_params(),
        "flops_per_token": trainer.session.flops_per_token,
    }


PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0, "A10G": 70.0}


def peak_tflops(device: str, given: float | None) -> tuple[float | None, str]:
    if given:
        return given, "given"
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
        for key, peak in PEAK_BF16_TFLOPS.items():
            if key in name:
                return peak, f"{name} dense bf16"
        return None, f"{name}: peak unknown (pass --peak-tflops)"
    return None, "cpu: pass --peak-tflops"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="default")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--shards", type=int, default=12)
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: known GPUs)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--json-out", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    cfg = load_config(args.config, _overrides(tuple(args.sets)))
    # measure steady training: no evaluation, checkpoint or export inside the window
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"every": 0}),
                                 "checkpoint": cfg.checkpoint.model_copy(update={"every": 0}),
                                 "export": cfg.export.model_copy(update={"every": 0}), "log_every": 0})
    work = Path(tempfile.mkdtemp(prefix="foundry-bench-trainer-"))
    try:
        rows_per_step = cfg.data.micro_batch_rows
        need_tokens = int(args.steps * rows_per_step * (cfg.model.block_size + 1) * 1.6)
        docs_per_shard = max(8, need_tokens // (args.shards - 1) // 350 + 1)
        t = time.perf_counter()
        manifests = make_stream(work / "data", n_shards=args.shards, docs_per_shard=docs_per_shard,
                                vocab_size=args.vocab, doc_len=(100, 600), seed=0)
        made_s = time.perf_counter() - t
        with_values = measure(cfg, manifests, work / "run-values", args.steps, args.warmup, args.vocab)
        no_values_cfg = cfg.model_copy(update={"value": cfg.value.model_copy(update={"enabled": False})})
        without_values = measure(no_values_cfg, manifests, work / "run-plain", args.steps, args.warmup, args.vocab)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    device = str(pick_device(cfg.device))
    peak, peak_note = peak_tflops(device, args.peak_tflops)
    mfu = lambda tps: None if peak is None else tps * with_values["flops_per_token"] / (peak * 1e12)  # noqa: E731
    result = {
        "config": args.config, "sets": args.sets, "device": device, "torch_threads": torch.get_num_threads(),
        "params": with_values["params"], "vocab": args.vocab, "block_size": cfg.model.block_size,
        "rows_per_step": rows_per_step, "steps_measured": with_values["steps_measured"],
        "shard_write_s": made_s,
        "trainer_tokens_per_s": with_values["tokens_per_s"],
        "trainer_median_tokens_per_s": with_values["median_tokens_per_s"],
        "trainer_data_wait_share": with_values["data_wait_share"],
        "trainer_no_values_tokens_per_s": without_values["tokens_per_s"],
        "trainer_no_values_median_tokens_per_s": without_values["median_tokens_per_s"],
        "trainer_no_values_data_wait_share": without_values["data_wait_share"],
        "bare_loop_tokens_per_s": without_values["bare_tokens_per_s"],
        "bare_loop_median_tokens_per_s": without_values["bare_median_tokens_per_s"],
        "ratio_trainer_to_bare": with_values["median_tokens_per_s"] / with_values["bare_median_tokens_per_s"],
        "ratio_trainer_no_values_to_bare": (without_values["median_tokens_per_s"]
                                            / without_values["bare_median_tokens_per_s"]),
        "flops_per_token": with_values["flops_per_token"], "peak_tflops": peak, "peak_note": peak_note,
        "mfu_trainer_no_values": mfu(without_values["median_tokens_per_s"]),
        "mfu_bare_loop": mfu(without_values["bare_median_tokens_per_s"]),
        "compile": cfg.compile, "bf16": cfg.bf16 and device == "cuda",
    }
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"config {args.config} {' '.join(args.sets)}: {result['params'] / 1e6:.2f} M parameters, vocab {args.vocab}, "
          f"{rows_per_step} x {cfg.model.block_size} tokens per step, {device}, {result['torch_threads']} threads, "
          f"{result['steps_measured']} steps measured")
    print(f"{'':34} {'tokens/s':>10} {'median':>10} {'data wait':>10} {'vs bare':>8}")
    for label, key in (("foundry train (value scores on)", "trainer"),
                       ("foundry train (value scores off)", "trainer_no_values")):
        print(f"{label:34} {result[key + '_tokens_per_s']:>10.0f} {result[key + '_median_tokens_per_s']:>10.0f} "
              f"{100 * result[key + '_data_wait_share']:>9.2f}% "
              f"{result['ratio_' + key + '_to_bare']:>8.2f}")
    print(f"{'bare torch loop, tokens in memory':34} {result['bare_loop_tokens_per_s']:>10.0f} "
          f"{result['bare_loop_median_tokens_per_s']:>10.0f} {'-':>10} {1.0:>8.2f}")
    print("(tokens/s: mean over the measured steps; median: the median step's rate; vs bare: ratio of medians)")
    if peak is not None:
        print(f"MFU (median rate, {peak:.0f} TFLOP/s peak, {peak_note}): trainer without value scores "
              f"{result['mfu_trainer_no_values']:.1%}, bare loop {result['mfu_bare_loop']:.1%}")
    else:
        print(f"MFU: no peak ({peak_note})")


if __name__ == "__main__":
    main()
