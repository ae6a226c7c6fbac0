"""Speed and peak memory of `foundry audit` on a generated output of N documents.

Generates, in a temporary folder, what a run over N raw documents leaves behind:
an archive (the Parquet layout `foundry archive` writes, 4 partitions, a few
sources; the value column holds a short stand-in, the audit never reads it),
manifest parts for ~70 % of the documents and ledger parts for the rest, in
parts of 20k rows like the sinks write, with a known set of faults injected
(missing, doubled in shards, doubled in the ledger, sharded and rejected).
Then each size is audited in a fresh child process, whose wall time and peak
RSS (the kernel's high-water mark) are printed, with its RSS right after imports for reference.
The same sizes' peaks side by side show whether memory grows with the range.

    .venv/bin/python bench/audit.py                 # 100k and 1M documents
    .venv/bin/python bench/audit.py --sizes 200000
    .venv/bin/python bench/audit.py --topic --sizes 1000000 [--port 19690]

``--topic``: the raw side is a raw topic instead, on a broker this script starts in a
temporary folder (as the tests do); N raw documents of ~300 bytes are published to it
first (not counted), and the audit reads and decodes every one of them.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

PARTITIONS = 4
SOURCES = np.array(["web", "books", "code", "news"])
FAULTS = {"missing": 37, "sharded_twice": 11, "ledgered_twice": 7, "sharded_and_rejected": 5}


def generate(root: Path, n: int, seed: int = 0) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    part = np.arange(n) % PARTITIONS
    off = np.arange(n) // PARTITIONS
    src = SOURCES[rng.integers(0, len(SOURCES), n)]
    ids = np.char.add("doc-", np.arange(n).astype(str))
    arc = root / "archive" / "date=2026-01-01"
    for s in SOURCES:
        for p in range(PARTITIONS):
            sel = np.flatnonzero((src == s) & (part == p))
            (arc / f"source={s}").mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({
                "partition": pa.array(part[sel], pa.int32()), "offset": pa.array(off[sel], pa.int64()),
                "timestamp_ms": pa.array(np.zeros(len(sel), dtype=np.int64)),
                "key": pa.array(ids[sel].astype(object), pa.binary()),
                "value": pa.array([b'{"schema":"raw_document"}'] * len(sel), pa.binary()),
                "id": pa.array(ids[sel]), "source": pa.array(src[sel])}),
                arc / f"source={s}" / f"p{p:03d}-{int(off[sel][0]):012d}.parquet")
    # Outcomes: 70 % sharded, the rest ledgered, then the faults.
    order = rng.permutation(n)
    bounds = np.cumsum([0, *FAULTS.values()])
    faulty = {k: order[bounds[i]:bounds[i + 1]] for i, k in enumerate(FAULTS)}
    clean = order[bounds[-1]:]
    cut = int(len(clean) * 0.7)
    # "missing" ones get no row at all.
    sharded = np.concatenate([clean[:cut], np.repeat(faulty["sharded_twice"], 2), faulty["sharded_and_rejected"]])
    ledgered = np.concatenate([clean[cut:], np.repeat(faulty["ledgered_twice"], 2), faulty["sharded_and_rejected"]])
    refs = np.char.add(np.char.add(np.char.add("foundry.raw:", part.astype(str)), ":"), off.astype(str))
    for sub, col, rows in (("manifest", "doc_id", sharded), ("ledger", "id", ledgered)):
        (root / "out" / sub).mkdir(parents=True, exist_ok=True)
        rows = np.sort(rows)
        for k in range(0, len(rows), 20_000):
            chunk = rows[k:k + 20_000]
            pq.write_table(pa.table({col: ids[chunk], "raw_ref": refs[chunk], "source": src[chunk]}),
                           root / "out" / sub / f"p000-{k:012d}.parquet")
    return dict(FAULTS)


def publish_raw(bootstrap: str, topic: str, root: Path, n: int) -> None:
    """The archive's documents as raw messages, partition and offset kept (one topic, 4 partitions)."""
    from confluent_kafka import Producer

    from iolayer.topics_admin import TopicPlan, ensure_topics

    ensure_topics(bootstrap, [TopicPlan(topic, PARTITIONS)])
    prod = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": "lz4",
                     "enable.idempotence": True, "queue.buffering.max.kbytes": 512 * 1024})
    words = " ".join(["lorem ipsum dolor sit amet consectetur"] * 7)
    cols = ("partition", "offset", "id", "source")
    t = pa.concat_tables(pq.read_table(f, columns=list(cols)) for f in sorted((root / "archive").rglob("*.parquet")))
    t = t.sort_by([("partition", "ascending"), ("offset", "ascending")])  # so the topic assigns the same offsets
    for p, off, doc_id, src in zip(*(t.column(c).to_pylist() for c in cols)):
        value = json.dumps({"schema": "raw_document", "v": 1, "id": doc_id, "source": src,
                            "text": f"{words} {off}"}).encode()
        while True:
            try:
                prod.produce(topic, value=value, partition=p, key=doc_id.encode())
                break
            except BufferError:
                prod.poll(0.1)
        prod.poll(0)
    assert prod.flush(300) == 0


def check(root: Path, bootstrap: str | None = None) -> None:
    """Runs in the child: audit, print the figures as JSON."""
    import psutil

    from foundry.audit import audit_output

    rss0 = psutil.Process().memory_info().rss
    t = time.perf_counter()
    if bootstrap:
        rep = audit_output(root / "out", bootstrap=bootstrap, raw_topic="foundry.raw")
    else:
        rep = audit_output(root / "out", archive=root / "archive")
    secs = time.perf_counter() - t
    # VmHWM, not getrusage: ru_maxrss survives exec, so it would report the parent's generation peak.
    peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"seconds": secs, "peak_rss_mb": peak_kb / 1024, "rss_after_imports_mb": rss0 / 2**20,
                      "checked": rep.raw_checked, "counts": rep.counts}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--topic", action="store_true", help="raw side: a raw topic on a broker started here")
    ap.add_argument("--port", type=int, default=19690)
    ap.add_argument("--check", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--bootstrap", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.check:
        check(Path(args.check), args.bootstrap)
        return
    cluster = bootstrap = None
    if args.topic:
        from foundry.broker import KafkaCluster

        broker_home = tempfile.mkdtemp(prefix="bench-audit-kafka-")
        cluster = KafkaCluster(Path(broker_home), port=args.port, heap="768m")
        bootstrap = cluster.up(timeout=180)
    print(f"audit of a generated output ({PARTITIONS} partitions), {'a raw topic' if args.topic else 'the archive'}"
          f" as the raw side")
    try:
        for n in (int(x) for x in args.sizes.split(",")):
            run_one(n, bootstrap)
    finally:
        if cluster is not None:
            cluster.down()


def run_one(n: int, bootstrap: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        t = time.perf_counter()
        want = generate(Path(tmp), n)
        if bootstrap:
            from iolayer.topics_admin import delete_topics

            delete_topics(bootstrap, ["foundry.raw"])
            time.sleep(2)
            publish_raw(bootstrap, "foundry.raw", Path(tmp), n)
        gen_s = time.perf_counter() - t
        extra = ["--bootstrap", bootstrap] if bootstrap else []
        res = subprocess.run([sys.executable, __file__, "--check", tmp, *extra], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parents[1])
        fig = json.loads(res.stdout.strip().splitlines()[-1])
        found = {k: fig["counts"][k] for k in want}
        print(f"n={n:>9,}  audit {fig['seconds']:6.1f}s ({n / fig['seconds']:,.0f} docs/s)  "
              f"peak RSS {fig['peak_rss_mb']:6.1f} MB (after imports {fig['rss_after_imports_mb']:.1f} MB)  "
              f"faults found {found} of {want} {'OK' if found == want else 'MISMATCH'}  "
              f"(generation {gen_s:.1f}s, not counted)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
