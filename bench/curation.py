"""Throughput and reject shares of the curation operators on the real corpora.

    .venv/bin/python bench/curation.py [--threads 2] [--max-docs 1000] [--ops toxicity,density] [--json]
                                       [--recipe schemas/recipes/default.yaml] [--procs 2] [--no-recipe]

For every operator registered in ``streams.stages.registry`` at run time
(toxicity, density, and whatever else is there: quality_rules, dedup, ...)
and every corpus in /work/shared/data, prints documents/s, MB/s (UTF-8 bytes
of document text per wall-clock second), CPU-seconds used by this process per
MB (a figure that stays meaningful on a shared, busy machine) and the share of
documents the operator rejects. Operators are built with their default
parameters plus ``intra_op_num_threads`` where the factory accepts it; an
operator that cannot be built that way is listed as skipped with the reason.
Each operator sees fresh copies of the documents, in batches of ``--batch``.

Then the whole recipe (default: ``schemas/recipes/default.yaml``): its operators in
order and the tokenizer, as the worker applies them but without Kafka, on
``--procs`` processes at once (each with every n-th document, as partitions split
them), per corpus: the in-process ceiling that the Kafka pipeline can approach.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas import CuratedDocument, Rejection  # noqa: E402
from streams.stages.registry import build_stage, operator_names  # noqa: E402

DATA = Path(os.environ.get("FOUNDRY_SHARED_DATA", ROOT.parent / "shared" / "data"))

# corpus name -> (file, optional filter on the record)
CORPORA = {
    "web_cc_text": ("web_cc_text.jsonl.gz", None),
    "web_extracted_text": ("web_extracted_text.jsonl.gz", None),
    "html_gold_text": ("html_pages.jsonl.gz", None),
    "zh_wiki_paragraphs": ("zh_wiki_paragraphs.jsonl.gz", None),
    "zh_reviews": ("zh_reviews.jsonl.gz", None),
    "zh_en_codeswitch": ("zh_en_codeswitch.jsonl.gz", None),
    "tox_en_davidson2017[toxic]": ("tox_en_davidson2017.jsonl.gz", lambda r: r["label"] == 1),
    "tox_en_davidson2017[benign]": ("tox_en_davidson2017.jsonl.gz", lambda r: r["label"] == 0),
    "tox_zh_cold[toxic]": ("tox_zh_cold.jsonl.gz", lambda r: r["label"] == 1),
    "tox_zh_cold[benign]": ("tox_zh_cold.jsonl.gz", lambda r: r["label"] == 0),
}


def load_corpus(name: str, max_docs: int, seed: int = 7) -> list[CuratedDocument]:
    file, keep = CORPORA[name]
    rows = []
    with gzip.open(DATA / file, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if keep is not None and not keep(r):
                continue
            text = r.get("gold_text") if file.startswith("html_pages") else r.get("text")
            if text and text.strip():
                rows.append((r["id"], text, r.get("lang")))
    if len(rows) > max_docs:
        rows = random.Random(seed).sample(rows, max_docs)
    return [CuratedDocument(id=i, text=t, source=name, lang=lang, recipe_version="bench",
                            content_hash=hashlib.sha256(t.encode("utf-8")).hexdigest()) for i, t, lang in rows]


def copies(docs: list[CuratedDocument]) -> list[CuratedDocument]:
    return [CuratedDocument(id=d.id, text=d.text, source=d.source, lang=d.lang, recipe_version=d.recipe_version,
                            content_hash=d.content_hash) for d in docs]


def build(op: str, threads: int):
    try:
        return build_stage({"op": op, "intra_op_num_threads": threads}), None
    except ValueError:
        pass
    try:
        return build_stage({"op": op}), None
    except Exception as exc:  # an operator that needs parameters we do not know
        return None, f"{type(exc).__name__}: {exc}"[:160]


def run(stage, docs: list[CuratedDocument], batch: int) -> dict:
    docs = copies(docs)
    n_bytes = sum(len(d.text.encode("utf-8")) for d in docs)
    rejected = 0
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(docs), batch):
        for out in stage.process_batch(docs[i : i + batch]):
            rejected += isinstance(out, Rejection)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"docs": len(docs), "MB": n_bytes / 1e6, "docs_per_s": len(docs) / wall, "MB_per_s": n_bytes / 1e6 / wall,
            "cpu_s_per_MB": cpu / max(n_bytes / 1e6, 1e-9), "reject_share": rejected / max(1, len(docs))}


class RecipeChain:
    """A recipe's curation operators and its tokenizer, applied in order as the worker does."""

    def __init__(self, recipe_path: str | None):
        from schemas.recipe import load_recipe
        from streams.partition_state import PartitionState
        from streams.stages.tokenize import SentencePieceTokenizer

        recipe = load_recipe(recipe_path)
        self.stages = [build_stage(s) for s in recipe.curation] + [SentencePieceTokenizer(recipe.tokenizer.model)]
        self._state = PartitionState

    def process_batch(self, docs):
        return self._state(self.stages).process(docs)


def _recipe_share(job) -> dict:
    """One process's share of the documents through the whole recipe (built before the clock starts)."""
    recipe_path, docs, batch = job
    # Lazy one-off costs (the language model's load, each ONNX session's first run) are
    # start-up, not throughput: a first chain takes a few documents, then a fresh one is timed.
    RecipeChain(recipe_path).process_batch(copies(docs[:8]))
    return run(RecipeChain(recipe_path), docs, batch)


def run_recipe(recipe_path: str | None, docs: list[CuratedDocument], procs: int, batch: int) -> dict:
    """The whole recipe on ``procs`` processes at once, each with every ``procs``-th document
    (as the worker's partitions split them); wall time is the slowest process's."""
    import multiprocessing as mp

    shares = [(recipe_path, docs[i::procs], batch) for i in range(procs)]
    with mp.get_context("fork").Pool(procs) as pool:
        parts = pool.map(_recipe_share, shares)
    n_docs = sum(r["docs"] for r in parts)
    mb = sum(r["MB"] for r in parts)
    wall = max(r["docs"] / r["docs_per_s"] for r in parts if r["docs_per_s"])
    return {"docs": n_docs, "MB": mb, "docs_per_s": n_docs / wall, "MB_per_s": mb / wall,
            "cpu_s_per_MB": sum(r["cpu_s_per_MB"] * r["MB"] for r in parts) / max(mb, 1e-9),
            "reject_share": sum(r["reject_share"] * r["docs"] for r in parts) / max(n_docs, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="intra_op_num_threads for ONNX operators")
    ap.add_argument("--max-docs", type=int, default=1000, help="documents per corpus (seeded sample)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--ops", default="", help="comma-separated operator names (default: all registered)")
    ap.add_argument("--corpora", default="", help="comma-separated corpus names (default: all)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--recipe", default=None, help="recipe for the whole-recipe rows (default: the default recipe)")
    ap.add_argument("--procs", type=int, default=2, help="processes for the whole-recipe rows (the cores used)")
    ap.add_argument("--no-recipe", action="store_true", help="only the operators one by one")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found")
    ops = [o for o in args.ops.split(",") if o] or operator_names()
    corpora = [c for c in args.corpora.split(",") if c] or list(CORPORA)
    docs = {c: load_corpus(c, args.max_docs) for c in corpora}
    results: dict = {}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {len(ops)} operators, {len(corpora)} corpora, threads={args.threads}, "
          f"load average {load:.1f} on {os.cpu_count()} CPUs")
    for op in ops:
        stage, err = build(op, args.threads)
        if stage is None:
            results[op] = {"skipped": err}
            print(f"\n{op}: skipped ({err})")
            continue
        print(f"\n{op}")
        print(f"  {'corpus':32s} {'docs':>6s} {'MB':>7s} {'docs/s':>9s} {'MB/s':>7s} {'cpu-s/MB':>9s} {'rejected':>8s}")
        rows = {}
        tot = {"docs": 0, "MB": 0.0, "wall": 0.0}
        for c in corpora:
            r = run(stage, docs[c], args.batch)
            rows[c] = r
            tot["docs"] += r["docs"]
            tot["MB"] += r["MB"]
            tot["wall"] += r["docs"] / r["docs_per_s"] if r["docs_per_s"] else 0.0
            print(f"  {c:32s} {r['docs']:6d} {r['MB']:7.2f} {r['docs_per_s']:9.1f} {r['MB_per_s']:7.2f} "
                  f"{r['cpu_s_per_MB']:9.2f} {100 * r['reject_share']:7.1f}%")
        if tot["wall"]:
            print(f"  {'all':32s} {tot['docs']:6d} {tot['MB']:7.2f} {tot['docs'] / tot['wall']:9.1f} "
                  f"{tot['MB'] / tot['wall']:7.2f}")
        results[op] = rows
    if not args.no_recipe:
        name = args.recipe or "default"
        print(f"\nwhole recipe ({name}: every operator in order + tokenizer), {args.procs} processes at once")
        print(f"  {'corpus':32s} {'docs':>6s} {'MB':>7s} {'docs/s':>9s} {'MB/s':>7s} {'cpu-s/MB':>9s} {'rejected':>8s}")
        rows = {}
        for c in corpora:
            r = rows[c] = run_recipe(args.recipe, docs[c], args.procs, args.batch)
            print(f"  {c:32s} {r['docs']:6d} {r['MB']:7.2f} {r['docs_per_s']:9.1f} {r['MB_per_s']:7.2f} "
                  f"{r['cpu_s_per_MB']:9.2f} {100 * r['reject_share']:7.1f}%")
        results[f"recipe:{name}"] = rows
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
