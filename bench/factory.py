"""The factory on a shared machine: the pipeline's rate with and without the trainer beside it, and how
soon after the first shard the first budget reaches the workers.

    .venv/bin/python bench/factory.py [--docs 6000] [--pairs 1] [--threads 1] [--nice 10] [--json]

Two runs of ``foundry up`` (the real processes against a local broker it starts on its own port),
one after the other on the same corpus (the first ``--docs`` web pages and Chinese Wikipedia
paragraphs of ``../shared/data``, published as fast as the source can), each until every
document is accounted for:

* **pipeline alone**: workers and sinks only (no trainer, no budget agent);
* **with the loop**: the same plus the continuous trainer (``--threads`` torch threads at
  ``--nice``) and the budget agent.

Printed per run: documents, seconds from the first outcome to the last (the workers' rate after
start-up), documents per second, the ratio of the two rates, the trainer's steps; and for the loop
run: seconds from the first shard on disk to the first BudgetUpdate on the budgets topic, and to the
first output part whose documents carry a budget version (a part closes within the recipe's
``shards.timeout_s``, so this is an upper bound by that much).
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pyarrow.parquet as pq  # noqa: E402

from foundry.factory import Factory  # noqa: E402
from foundry.factory_config import FactoryConfig  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def write_corpus(path: Path, n: int) -> None:
    """Half web pages, half Chinese Wikipedia paragraphs, interleaved."""
    halves = []
    for name in ("web_extracted_text.jsonl.gz", "zh_wiki_paragraphs.jsonl.gz"):
        with gzip.open(DATA / name, "rt", encoding="utf-8") as f:
            halves.append([line for _, line in zip(range(n // 2), f)])
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for pair in zip(*halves):
            out.writelines(pair)


def first_budget_part(out: Path) -> float | None:
    """mtime of the first output part with a document that carries a budget version."""
    times = []
    for part in list((out / "manifest").glob("*.parquet")) + list((out / "ledger").glob("*.parquet")):
        t = pq.read_table(part)
        if "budget_version" in t.column_names and any(v not in (None, "") for v in t.column("budget_version")
                                                      .to_pylist()):
            times.append(part.stat().st_mtime)
        elif "scores_json" in t.column_names and any('"budget_version"' in (s or "")
                                                     for s in t.column("scores_json").to_pylist()):
            times.append(part.stat().st_mtime)
    return min(times) if times else None


def outcome_span(out: Path) -> float:
    """Seconds between the first and the last output part written (the workers' steady span, to within
    a shard timeout)."""
    parts = list((out / "manifest").glob("*.parquet")) + list((out / "ledger").glob("*.parquet"))
    times = sorted(p.stat().st_mtime for p in parts)
    return times[-1] - times[0] if len(times) > 1 else 0.0


def one_run(name: str, work: Path, corpus: Path, port: int, loop: bool, args) -> dict:
    run_dir, out = work / name, work / f"out-{name}"
    cfg = FactoryConfig.model_validate({
        "run_dir": str(run_dir), "out": str(out), "bootstrap": f"127.0.0.1:{port}",
        "kafka_home": str(work / "kafka"), "namespace": name, "raw_topic": f"foundry.{name}.raw",
        "trainer": {"enabled": loop, "config": "tiny", "threads": args.threads, "nice": args.nice,
                    "set": {"value.publish_every": 10}},
        "budget": {"enabled": loop, "window_tokens": 4000, "window_s": 5.0},
        "sources": [{"kind": "files", "name": "corpus", "paths": [str(corpus)], "licence": "see the data README"}],
        "drain_timeout_s": 600, "metrics_port": 0})
    t0 = time.time()
    summary = Factory(cfg, echo=lambda m: print(f"  [{name}] {m}", file=sys.stderr)).run(
        for_seconds=args.timeout, until_done=True)
    out_dir = Path(summary["out_dir"])
    span = outcome_span(out_dir)
    row = {"run": name, "docs": summary["docs_in"], "accounted": summary["accounted"],
           "steady_s": round(span, 1), "docs_per_s": round(summary["docs_in"] / span, 1) if span else None,
           "wall_s": round(time.time() - t0, 1), "trainer_steps": summary["trainer"]["steps"],
           "budget_versions": summary["budget"]["versions_published"]}
    if loop:
        shards = sorted(p.stat().st_mtime for p in (out_dir / "shards").glob("*.tar"))
        seen = [json.loads(ln)["seen"] for ln in (run_dir / "budgets.jsonl").read_text().splitlines()] \
            if (run_dir / "budgets.jsonl").exists() else []
        applied = first_budget_part(out_dir)
        first = shards[0] if shards else None
        row["first_shard_to_first_budget_s"] = round(min(seen) - first, 1) if seen and first else None
        row["first_shard_to_budget_applied_s"] = round(applied - first, 1) if applied and first else None
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=6000,
                    help="enough that the pipeline is still busy when the trainer's first budget comes")
    ap.add_argument("--pairs", type=int, default=1, help="alone/loop pairs, run alternately (A B A B ...)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the trainer")
    ap.add_argument("--nice", type=int, default=10, help="the trainer's niceness")
    ap.add_argument("--port", type=int, default=19860)
    ap.add_argument("--timeout", type=float, default=1200.0)
    ap.add_argument("--work", default="var/bench-factory")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    corpus = work / "corpus.jsonl.gz"
    write_corpus(corpus, args.docs)
    rows, ratios = [], []
    for i in range(args.pairs):
        alone = one_run(f"alone{i}", work, corpus, args.port, False, args)
        loop = one_run(f"loop{i}", work, corpus, args.port, True, args)
        rows += [alone, loop]
        if alone["docs_per_s"] and loop["docs_per_s"]:
            ratios.append(round(loop["docs_per_s"] / alone["docs_per_s"], 3))
    ratio = sorted(ratios)[len(ratios) // 2] if ratios else None
    result = {"runs": rows, "rate_with_trainer_over_alone": ratios, "median_ratio": ratio,
              "threads": args.threads, "nice": args.nice}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for r in rows:
        print(f"{r['run']:6s} {r['docs']} docs ({r['accounted']} accounted), {r['docs_per_s']} docs/s over "
              f"{r['steady_s']} s after start-up, wall {r['wall_s']} s, trainer steps {r['trainer_steps']}, "
              f"budget versions {r['budget_versions']}")
    print(f"pipeline rate with the trainer beside it / alone, per pair: {ratios} (median {ratio}; trainer: "
          f"{args.threads} thread(s), nice {args.nice})")
    for r in rows:
        if "first_shard_to_first_budget_s" in r:
            print(f"{r['run']}: first shard -> first BudgetUpdate: {r['first_shard_to_first_budget_s']} s; "
                  f"-> first output part with a budget version: {r['first_shard_to_budget_applied_s']} s")


if __name__ == "__main__":
    main()
