"""The budget benchmark's figures: compute to reach the unpruned loss, savings, spread, plot.

Total compute of an arm = training FLOPs + value-scoring FLOPs (its extra forward passes and
probe gradients, counted by the trainer). The held-out evaluations themselves are measurement,
the same in every arm, and counted in none. Curation CPU (the density scorer of the static arm,
the budget stage) is reported apart, in CPU seconds: it is not FLOPs of the model.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any


def first_reach(curve: list[tuple], target: float) -> tuple[float, float] | None:
    """(training tokens, total FLOPs) where the evaluation loss first reaches ``target`` (linear
    interpolation between evaluations); None when it never does."""
    prev = None
    for step, tok, train_f, score_f, loss in curve:
        total = train_f + score_f
        if loss <= target:
            if prev is None or prev[2] == loss:
                return float(tok), float(total)
            f = (prev[2] - target) / (prev[2] - loss)
            return prev[0] + f * (tok - prev[0]), prev[1] + f * (total - prev[1])
        prev = (tok, total, loss)
    return None


def add_savings(runs: list[dict[str, Any]]) -> float:
    """Per run of one seed: compute to reach L* (the unpruned arm's final loss) and the saving in
    total compute against the unpruned arm's own. Returns L*."""
    ref = next(r for r in runs if r["policy"] == "none")
    target = ref["final_loss"]
    ref_reach = first_reach(ref["curve"], target)
    for r in runs:
        reach = first_reach(r["curve"], target)
        r["target_loss"] = target
        r["reach_tokens"], r["reach_flops"] = reach if reach else (None, None)
        r["saving"] = (1.0 - reach[1] / ref_reach[1]) if reach and ref_reach else None
        r["score_share"] = r["score_flops"] / r["train_flops"] if r["train_flops"] else 0.0
    return target


def _fmt(x, spec: str, none: str = "n/r") -> str:
    return none if x is None else format(x, spec)


def seed_table(runs: list[dict[str, Any]]) -> str:
    head = (f"{'arm':18} {'tokens':>8} {'train TF':>9} {'score TF':>9} {'score %':>8} {'total TF':>9} "
            f"{'wall s':>7} {'cur. s':>6} {'keep':>6} {'junk':>6} {'final loss':>10} {'TF to L*':>9} {'saving':>7}")
    lines = [head]
    for r in runs:
        lines.append(
            f"{r['arm']:18} {r['train_tokens'] / 1e6:>7.2f}M {r['train_flops'] / 1e12:>9.3f} "
            f"{r['score_flops'] / 1e12:>9.3f} {r['score_share']:>7.1%} {r['total_flops'] / 1e12:>9.3f} "
            f"{r['wall_s']:>7.0f} {r['curation_cpu_s']:>6.1f} {r['keep_rate']:>6.1%} {r['low_value_share']:>6.1%} "
            f"{r['final_loss']:>10.4f} {_fmt(r['reach_flops'] and r['reach_flops'] / 1e12, '>9.3f'):>9} "
            f"{_fmt(r['saving'], '>7.1%'):>7}")
    return "\n".join(lines)


def _spread(xs: list[float]) -> str:
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return f"{xs[0]:.4g}"
    return f"{statistics.mean(xs):.4g} ± {statistics.stdev(xs):.2g} [{min(xs):.4g}, {max(xs):.4g}]"


def summary(by_seed: dict[int, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per arm over the seeds: saving (mean ± sd [min, max]; a seed that never reached L* counts as
    not reached), final loss minus the unpruned final loss, scoring share."""
    out: dict[str, dict[str, Any]] = defaultdict(lambda: {"saving": [], "loss_delta": [], "score_share": [],
                                                           "not_reached": 0, "wall_s": []})
    for runs in by_seed.values():
        ref = next(r for r in runs if r["policy"] == "none")
        for r in runs:
            o = out[r["arm"]]
            if r["saving"] is None:
                o["not_reached"] += 1
            else:
                o["saving"].append(r["saving"])
            o["loss_delta"].append(r["final_loss"] - ref["final_loss"])
            o["score_share"].append(r["score_share"])
            o["wall_s"].append(r["wall_s"])
    return dict(out)


def summary_table(summ: dict[str, dict[str, Any]], n_seeds: int) -> str:
    lines = [f"over {n_seeds} seed(s): saving in total compute to reach L*; final loss - unpruned final loss"]
    for arm, o in summ.items():
        nr = f" (L* not reached in {o['not_reached']})" if o["not_reached"] else ""
        lines.append(f"  {arm:18} saving {_spread(o['saving'])}{nr}; loss delta {_spread(o['loss_delta'])}; "
                     f"scoring {_spread(o['score_share'])} of training")
    return "\n".join(lines)


def flatness(by_seed: dict[int, list[dict[str, Any]]], tail: float = 0.25) -> dict[str, float]:
    """Is the unpruned curve still falling? Its loss drop over the last ``tail`` of the run (mean over
    seeds) against the seeds' spread of its final loss."""
    drops, finals = [], []
    for runs in by_seed.values():
        curve = next(r for r in runs if r["policy"] == "none")["curve"]
        cut = curve[-1][0] * (1.0 - tail)
        before = [c for c in curve if c[0] <= cut]
        if before:
            drops.append(before[-1][4] - curve[-1][4])
        finals.append(curve[-1][4])
    return {"tail_drop": statistics.mean(drops) if drops else float("nan"),
            "final_sd": statistics.stdev(finals) if len(finals) > 1 else float("nan")}


def plot(by_seed: dict[int, list[dict[str, Any]]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return False
    seeds = sorted(by_seed)
    fig, axes = plt.subplots(1, len(seeds), figsize=(6 * len(seeds), 4.5), squeeze=False, sharey=True)
    for ax, seed in zip(axes[0], seeds):
        runs = by_seed[seed]
        lo = min(c[4] for r in runs for c in r["curve"])
        for r in runs:
            ax.plot([(c[2] + c[3]) / 1e12 for c in r["curve"]], [c[4] for c in r["curve"]], label=r["arm"],
                    linewidth=1.2)
        ax.axhline(runs[0]["target_loss"], color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(f"seed {seed}")
        ax.set_xlabel("total compute: training + value scoring (TFLOP)")
        ax.set_ylim(lo - 0.05, lo + 1.2)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("held-out loss, evaluation set (nats/token)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
