"""Pipeline benchmark: end to end through the real broker, and each stage alone.

    python bench/pipeline.py [--docs 50000] [--corpus FILE ...] [--bootstrap HOST:PORT]

Prints documents/s and MB/s end to end and for each stage run alone on the
same documents, the end-to-end rate as a ratio of the slowest stage's, and the
peak RSS of each process. Without --bootstrap it starts a broker of its own in
a temporary folder (and stops it afterwards).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consumers.shard_writer import ShardWriter  # noqa: E402
from schemas.recipe import load_recipe  # noqa: E402
from schemas import RawDocument  # noqa: E402
from streams.sources.files import FileSource  # noqa: E402
from streams.sources.synthetic import SyntheticConfig, SyntheticSource  # noqa: E402
from streams.stages.dedup import BloomDeduper  # noqa: E402
from streams.stages.tokenize import SentencePieceTokenizer  # noqa: E402
from streams.stages.tokenizer_training import train_tokenizer  # noqa: E402
from streams.stages.validate import Validator  # noqa: E402


def rate(name: str, n: int, nbytes: int, seconds: float) -> dict:
    row = {"stage": name, "docs_per_s": n / seconds, "mb_per_s": nbytes / 1e6 / seconds}
    print(f"  {name:<28} {row['docs_per_s']:>10.0f} docs/s {row['mb_per_s']:>8.2f} MB/s")
    return row


def stages_alone(docs: list[RawDocument], tmp: Path) -> list[dict]:
    nbytes = sum(len(d.text.encode()) for d in docs)
    rows = []
    t = time.perf_counter()
    encoded = [d.encode() for d in docs]
    decoded = [RawDocument.decode(b) for b in encoded]
    rows.append(rate("schema encode+decode", len(docs), nbytes, time.perf_counter() - t))
    v = Validator("bench")
    t = time.perf_counter()
    curated = [v(d) for d in decoded]
    rows.append(rate("validate+hash", len(docs), nbytes, time.perf_counter() - t))
    curated = [c for c in curated if hasattr(c, "content_hash") and c.__class__.__name__ == "CuratedDocument"]
    dd = BloomDeduper(1_000_000, 0.001)
    t = time.perf_counter()
    kept = [o for o in dd.process_batch(curated) if o.__class__.__name__ == "CuratedDocument"]
    rows.append(rate("bloom dedup", len(curated), nbytes, time.perf_counter() - t))
    model = train_tokenizer((d.text for d in docs), tmp / "tok", vocab_size=8000, max_mb=4)
    tok = SentencePieceTokenizer(model)
    kbytes = sum(len(d.text.encode()) for d in kept)
    t = time.perf_counter()
    for i in range(0, len(kept), 256):
        tok.process_batch(kept[i:i + 256])
    rows.append(rate("sentencepiece tokenize", len(kept), kbytes, time.perf_counter() - t))
    w = ShardWriter("127.0.0.1:1", tmp / "shards", recipe_version="bench", vocab_size=tok.vocab_size, publish=False)
    t = time.perf_counter()
    for i in range(0, len(kept), 2000):
        w.write_part(0, i, i + 2000, [(i + j, d) for j, d in enumerate(kept[i:i + 2000])])
    rows.append(rate("shard write (tar+parquet)", len(kept), kbytes, time.perf_counter() - t))
    return rows


def broker_process(port: int):
    """The process listening on the broker's port (to count its CPU time), or None."""
    import psutil

    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    return None


def cpu_seconds(proc) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def end_to_end(args, docs_path: Path, tmp: Path) -> dict:
    from foundry.broker import KafkaCluster
    from foundry.run import run_pipeline

    cluster = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        cluster = KafkaCluster(tmp / "kafka", port=args.port)
        bootstrap = cluster.up()
    broker = broker_process(int(bootstrap.rsplit(":", 1)[1]))
    broker_cpu0 = cpu_seconds(broker) if broker else 0.0
    try:
        ns = f"bench{int(time.time())}"
        s = run_pipeline(bootstrap, load_recipe(args.recipe), corpus=[str(docs_path)], namespace=ns,
                         raw_topic=f"{ns}.raw", out_root=tmp / "out", timeout=3600, workers=args.workers,
                         echo=lambda *_: None)
        broker_cpu = cpu_seconds(broker) - broker_cpu0 if broker else None
    finally:
        if cluster is not None:
            cluster.down()
    print(f"  {'end to end (2 agents + sinks)':<28} {s.docs_per_s:>10.0f} docs/s {s.mb_per_s:>8.2f} MB/s"
          f"   ({s.docs_in} docs, {s.seconds}s, {s.shards} shards)")
    print(f"  {'  workers after start-up':<28} {s.steady_docs_per_s:>10.0f} docs/s {s.steady_mb_per_s:>8.2f}"
          f" MB/s   (start-up: {s.startup_s}s until the first batch ({s.startup_docs}) was out;"
          f" all out at {s.curated_s}s, in shards and ledger at {s.seconds}s;"
          f" {s.outcomes_sent - s.docs_in} outcomes sent twice after rebalances)")
    print("  rejected:", s.rejections_by_reason, f"written: {s.docs_written} documents, {s.tokens_written} tokens")
    print("  peak RSS MB:", s.peak_rss_mb)
    cpu = dict(s.cpu_s, **({"broker": round(broker_cpu, 1)} if broker_cpu is not None else {}))
    # Where the machine's CPU went (the broker's includes the publishing before the services started).
    print("  CPU seconds per MB of input:", {k: round(v / s.mb_in, 2) for k, v in cpu.items()},
          f"total {sum(cpu.values()) / s.mb_in:.2f}")
    print("    from first to last outcome:", s.steady_cpu_s_per_mb,
          f"sum {sum(s.steady_cpu_s_per_mb.values()):.2f} (broker not included)")
    return {"docs_per_s": s.steady_docs_per_s, "mb_per_s": s.mb_per_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=50_000)
    ap.add_argument("--corpus", nargs="*")
    ap.add_argument("--bootstrap")
    ap.add_argument("--port", type=int, default=19792)
    ap.add_argument("--recipe")
    ap.add_argument("--stages-only", action="store_true")
    ap.add_argument("--workers", type=int, default=1, help="stream worker processes")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        docs_path = tmp / "corpus.jsonl"
        src = FileSource(args.corpus) if args.corpus else SyntheticSource(SyntheticConfig(n_docs=args.docs, seed=42))
        docs = list(src)
        with open(docs_path, "w") as fh:
            for doc in docs:
                fh.write(doc.encode().decode() + "\n")  # RawDocument JSON has id and text fields
        print(f"corpus: {len(docs)} documents, {sum(len(x.text.encode()) for x in docs) / 1e6:.1f} MB")
        print("each stage alone (one process, one thread):")
        rows = stages_alone(docs, tmp)
        if args.stages_only:
            return
        print(f"through Kafka ({args.workers} worker process(es), shard writer, ledger, one broker):")
        e2e = end_to_end(args, docs_path, tmp)
        slowest = min(rows, key=lambda r: r["docs_per_s"])
        print(f"end-to-end after start-up / slowest stage alone ({slowest['stage']}): "
              f"{e2e['docs_per_s'] / slowest['docs_per_s']:.2f}")


if __name__ == "__main__":
    main()
