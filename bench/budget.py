"""Do value-driven token budgets pay for themselves? Every arm on the same stream, total compute counted.

    .venv/bin/python bench/budget.py [--steps 2000] [--seeds 0,1] [--arms none,value,...] [--out var/bench-budget]

**In-process, no Kafka** (stated plainly: the pipeline's and the trainer's real modules called
in one process, not the Faust agents). The stream (``bench/budget_stream.py``): real text from
``../shared/data`` with three generated low-value sources and a near-duplicate flood; exact
duplicates are removed first in every arm. The arms (``bench/budget_arms.py``):

* ``none``: no pruning, no value scoring;
* ``value``: value budgets, every step scored (the trainer's default);
* ``value-sampled``: value budgets from a sample: every ``--sample-every``-th step scored and the
  probe gradient refreshed every ``--sampled-direction-every`` steps (the cheaper scorer);
* ``random``: random pruning at the overall keep rate ``value-sampled`` reached;
* ``static``: the density score above one threshold that keeps the same share of tokens;
* ``oracle``: the real sources whole, the generated ones dropped (a label oracle).

Held-out data: 8 % of every real source never enters the stream; half of it (by another hash)
is the *probe* the value scores are computed against, the other half the *evaluation set* that
measures every arm's held-out loss and steers nothing (``budget_stream.real_sources``).

Printed per seed: per arm tokens, training / scoring / total FLOPs, wall time, curation CPU,
keep rate, share of admitted tokens from low-value kinds, final evaluation loss, total compute
to reach L* (the unpruned arm's final loss) and the saving against the unpruned arm's compute
to reach it; then savings and loss differences over the seeds (mean ± sd [min, max]), whether
the unpruned curve is still falling at the end, and the plot ``<out>/budget_loss.png`` (loss
against total compute). Everything also goes to ``<out>/budget_result.json``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.budget_arms import Arm, run_arm  # noqa: E402
from bench.budget_report import add_savings, flatness, plot, seed_table, summary, summary_table  # noqa: E402
from bench.budget_stream import (balanced, build_stream, calibrate, probe_prefix, real_sources,  # noqa: E402
                                 tokenize, tokenizer_for)

ARMS = ("none", "value", "value-sampled", "random", "static", "oracle")


def make_arms(args) -> list[Arm]:
    spec = {"none": Arm("none", "none"),
            "value": Arm("value", "value", value_every=1, direction_every=20),
            "value-sampled": Arm("value-sampled", "value", value_every=args.sample_every,
                                 direction_every=args.sampled_direction_every),
            "random": Arm("random", "random"), "static": Arm("static", "static"), "oracle": Arm("oracle", "oracle")}
    return [spec[a] for a in args.arms]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000, help="trainer steps per arm (16 x 64 tokens each)")
    ap.add_argument("--seeds", default="0", help="comma-separated stream seeds")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, from {','.join(ARMS)}")
    ap.add_argument("--match", default="value-sampled", help="the value arm whose keep rate random/static use")
    ap.add_argument("--sample-every", type=int, default=6, help="value-sampled: score every k-th step")
    ap.add_argument("--sampled-direction-every", type=int, default=120)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--eval-rows", type=int, default=160, help="rows of the evaluation set (64 tokens each)")
    ap.add_argument("--probe-rows", type=int, default=32)
    ap.add_argument("--n-embd", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--window-tokens", type=int, default=30_000, help="scored tokens per budget window (every=1)")
    ap.add_argument("--shard-tokens", type=int, default=8_000, help="raw stream tokens per shard")
    ap.add_argument("--skip-k", type=int, default=16, help="trainer-side skip of repeated spans, every arm (0: off)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="allocator setting, e.g. source_floor=0.05")
    ap.add_argument("--out", type=Path, default=ROOT / "var" / "bench-budget")
    ap.add_argument("--keep-work", action="store_true", help="keep the runs' shards and logs in <out>/work")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="RESULT_JSON",
                    help="report the seeds of several earlier runs' budget_result.json together (runs nothing)")
    args = ap.parse_args(argv)
    args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = set(args.arms) - set(ARMS)
    if unknown or "none" not in args.arms:
        ap.error(f"unknown arms {sorted(unknown)}" if unknown else "the arms must include none (the reference)")
    args.alloc = {}
    for s in args.sets:
        k, v = s.split("=", 1)
        args.alloc[k] = json.loads(v) if v[:1] in "[{" else (float(v) if "." in v or "e" in v else int(v))
    return args


def run_seed(args, seed: int, real, heldout, work: Path) -> tuple[list[dict], dict]:
    t0 = time.perf_counter()
    # pruned arms read further into the same stream for the same steps: about 3x what none reads
    stream = build_stream(real, int(max(1.0, args.steps * 16 * 64 * 3.0 / 1e6) * 1e6), seed)
    sp, _ = tokenizer_for(stream, args.out, args.vocab)
    tokenize(sp, stream)
    probe_docs, eval_docs = heldout
    tokenize(sp, probe_docs)
    tokenize(sp, eval_docs)
    probe = probe_prefix(probe_docs, args.probe_rows, 65)
    stage_params = calibrate(stream)
    raw_by_kind: Counter = Counter(d.source if d.kind == "real" else d.kind for d in stream)
    tokens_by_kind: Counter = Counter()
    for d in stream:
        tokens_by_kind[d.source if d.kind == "real" else d.kind] += len(d.tokens)
    info = {"stream_tokens": sum(tokens_by_kind.values()), "stream_tokens_by_kind": dict(tokens_by_kind),
            "stream_docs_by_kind": dict(raw_by_kind), "probe_docs": len(probe), "eval_docs": len(eval_docs),
            "vocab": sp.get_piece_size(), "prep_s": time.perf_counter() - t0, "stage_params": stage_params}
    runs: list[dict] = []
    arms = make_arms(args)
    order = sorted(arms, key=lambda a: a.policy in ("random", "static"))  # matched arms after their reference
    for arm in order:
        if arm.policy in ("random", "static"):
            ref = next((r for r in runs if r["arm"] == args.match), None)
            if ref is None:
                raise SystemExit(f"--match {args.match}: that arm is not in --arms")
            arm.keep_rate = ref["keep_rate"]
        print(f"seed {seed}: arm {arm.name} ...", flush=True)
        r = run_arm(arm, args, stream, probe + eval_docs, args.probe_rows, sp.get_piece_size(), work,
                    seed=seed, stage_params=stage_params)
        if r["heldout"].get("probe_docs") != len(probe):  # the trainer's probe is exactly the probe documents
            raise SystemExit(f"probe/evaluation split broke: trainer took {r['heldout']} for {len(probe)} probe docs")
        runs.append(r)
    runs.sort(key=lambda r: args.arms.index(r["arm"]))
    return runs, info


def report(by_seed: dict[int, list[dict]], infos: dict, args) -> dict:
    """Print the per-seed tables, the summary over seeds and the flatness check; write the plot."""
    for seed, runs in sorted(by_seed.items()):
        target = add_savings(runs)
        info = infos[seed]
        print(f"\nseed {seed}: stream {info['stream_tokens'] / 1e6:.2f} M tokens ("
              + ", ".join(f"{k} {v / info['stream_tokens']:.0%}" for k, v in
                          Counter(info["stream_tokens_by_kind"]).most_common()) + f"); L* = {target:.4f}")
        print(seed_table(runs))
    summ = summary(by_seed)
    flat = flatness(by_seed)
    plotted = plot(by_seed, args.out / "budget_loss.png")
    r0 = next(iter(by_seed.values()))[0]
    print(f"\nin-process, no Kafka; trainer 2 layers x {args.n_embd}, {r0['params'] / 1e6:.2f} M parameters, "
          f"{r0['steps']} steps x 1024 tokens, {args.threads} torch thread(s); TF = 1e12 FLOPs; 'junk' = share of "
          "admitted tokens from the generated low-value kinds; 'cur. s' = curation CPU of the admission policy")
    print(summary_table(summ, len(by_seed)))
    print(f"unpruned curve over its last 25 % of steps: fell {flat['tail_drop']:.4f} nats "
          f"(seed sd of its final loss: {flat['final_sd']:.4f})")
    if plotted:
        print(f"plot: {args.out / 'budget_loss.png'}")
    return {"summary": summ, "flatness": flat}


def merge(paths: list[Path], args) -> dict:
    """Seeds run by separate invocations (``--seeds 0``, ``--seeds 1``, ...) reported as one run."""
    by_seed: dict[int, list[dict]] = {}
    infos: dict[int, dict] = {}
    for path in paths:
        res = json.loads(Path(path).read_text())
        args.n_embd, args.threads = res["args"]["n_embd"], res["args"]["threads"]
        for seed, runs in res["runs"].items():
            by_seed[int(seed)] = runs
            infos[int(seed)] = res["info"][seed]
    return {"runs": by_seed, "info": infos, **report(by_seed, infos, args)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    if args.merge:
        result = merge(args.merge, args)
        (args.out / "budget_result.json").write_text(json.dumps(result, indent=2, default=str))
        return result
    work = args.out / "work"
    real, probe_src, eval_src = real_sources()
    heldout = (balanced(probe_src), balanced(eval_src))
    by_seed: dict[int, list[dict]] = {}
    infos = {}
    for seed in args.seeds:
        by_seed[seed], infos[seed] = run_seed(args, seed, real, heldout, work)
    figures = report(by_seed, infos, args)
    result = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "runs": by_seed, "info": infos, **figures, "seconds": time.perf_counter() - t_start}
    (args.out / "budget_result.json").write_text(json.dumps(result, indent=2, default=str))
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    print(f"total {result['seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
