"""What the metrics cost the worker, against what the worker does per document.

    .venv/bin/python bench/telemetry.py [--docs 2000] [--batch 256] [--corpus web_cc_text.jsonl.gz] [--json]

One run, same documents, CPU seconds of this process (a shared machine's wall time
says little): (a) the default recipe's operators and the tokenizer as the worker runs
them (``PartitionState.process``, whose per-operator timer is part of it); (b) the
metric calls the worker makes per batch on its own, replayed on the outcomes of (a):
``record_outcomes`` for both stages, one ``operator_timer`` per operator and
``observe_partition_state``. Prints (b) per document and as a share of (a).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas import CuratedDocument  # noqa: E402
from schemas.recipe import load_recipe  # noqa: E402
from streams.partition_state import PartitionState  # noqa: E402
from streams.stages.dedup import BloomDeduper  # noqa: E402
from streams.stages.registry import build_stage  # noqa: E402
from streams.stages.tokenize import SentencePieceTokenizer  # noqa: E402
from streams.stages.validate import content_hash  # noqa: E402
from telemetry import metrics  # noqa: E402

DATA = Path(os.environ.get("FOUNDRY_SHARED_DATA", ROOT.parent / "shared" / "data"))


def documents(path: Path, n: int) -> list[CuratedDocument]:
    docs = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            text = rec.get("text") or ""
            docs.append(CuratedDocument(id=str(rec.get("id", len(docs))), text=text, source=path.stem.split(".")[0],
                                        content_hash=content_hash(text), recipe_version="b"))
            if len(docs) >= n:
                break
    return docs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--corpus", default="web_cc_text.jsonl.gz")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    recipe = load_recipe(None)
    # budget_prune needs a broker; everything else is built as the worker builds it.
    specs = [s for s in recipe.curation if s["op"] != "budget_prune"]
    stages = [BloomDeduper(recipe.dedup.capacity, recipe.dedup.fp_rate)] + [build_stage(s) for s in specs]
    stages.append(SentencePieceTokenizer(recipe.tokenizer.model))
    state = PartitionState(stages)
    docs = documents(DATA / args.corpus, args.docs)
    metrics._started["port"] = 0  # as with an exporter running: observe_partition_state does its work

    batches = [docs[i:i + args.batch] for i in range(0, len(docs), args.batch)]
    outcomes = []
    c0 = time.process_time()
    for b in batches:
        outcomes.append(state.process(b))
    work_s = time.process_time() - c0

    reps = 5  # the metric calls are short: repeat them for a readable figure
    c0 = time.process_time()
    for _ in range(reps):
        for b, out in zip(batches, outcomes):
            metrics.record_outcomes("ingest", b)
            metrics.record_outcomes("curate", out)
            for st in stages:
                with metrics.operator_timer(st.name, len(b)):
                    pass
            metrics._state_seen.clear()  # the real call is throttled to once per 2 s; here: every batch
            metrics.observe_partition_state(0, stages)
    metric_s = (time.process_time() - c0) / reps

    mb = sum(len(d.text.encode("utf-8")) for d in docs) / 1e6
    res = {"docs": len(docs), "mb": round(mb, 2), "batches": len(batches), "operators": len(stages),
           "worker_cpu_s": round(work_s, 3), "worker_us_per_doc": round(work_s / len(docs) * 1e6, 1),
           "metrics_cpu_s": round(metric_s, 4), "metrics_us_per_doc": round(metric_s / len(docs) * 1e6, 2),
           "metrics_share_of_worker": round(metric_s / work_s, 5)}
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        for k, v in res.items():
            print(f"{k:>26}: {v}")


if __name__ == "__main__":
    main()
