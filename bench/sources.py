"""Sources benchmark: each source publishing to the real broker, as a ratio to
reading the same input without publishing.

    python bench/sources.py [--bootstrap HOST:PORT] [--pages 300] [--only crawl,warc,files]
    python bench/sources.py extractors      # the trafilatura / resiliparse comparison

* crawl: pages/s and CPU ms per page crawling a generated site on 127.0.0.1
  (no politeness delay, 4 requests in flight), through the Kafka frontier and
  raw topic, vs the same crawl with an in-memory frontier and no publishing.
* warc: records/s and MB/s ingesting shared/data/warc (14 real files), vs
  reading and extracting the same records without publishing.
* files: docs/s ingesting JSONL.gz corpora from shared/data, vs reading them.

Without --bootstrap it starts a broker of its own (ports 39100-39199) in a
temporary folder and stops it afterwards. Every published run goes to fresh
topics.
"""
from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data"


def _timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def _serve_site(pages: int, q, stop) -> None:
    from tests.streams.sources.sitegen import SiteConfig, TestSite

    site = TestSite(SiteConfig(n_pages=pages, specials=False, max_lifetime_s=600)).start()
    q.put(site.url("/"))
    stop.wait(600)
    site.stop()


def bench_crawl(bootstrap: str, pages: int) -> dict:
    import multiprocessing as mp

    from iolayer.publisher import RecordPublisher
    from streams.sources.crawl.engine import CrawlConfig, Crawler
    from streams.sources.crawl.fetch import FetchConfig
    from streams.sources.crawl.frontier import KafkaFrontier, MemoryFrontier, ensure_crawl_topics
    from streams.sources.runner import ensure_raw_topic
    from streams.sources.urls import Scope

    # The site runs in a process of its own, so its CPU is not counted as the crawler's.
    ctx = mp.get_context("spawn")
    q, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve_site, args=(pages, q, stop), daemon=True)
    server.start()
    seed = q.get(timeout=60)
    cfg = dict(fetch=FetchConfig(), scope=Scope(max_depth=50), delay_s=0.0, host_concurrency=4, concurrency=4,
               idle_exit_s=1.0, checkpoint_s=1.0)
    try:
        def plain():
            c = Crawler(CrawlConfig(**cfg), MemoryFrontier(), lambda d: None, lambda: None, log=lambda m: None)
            c.add_seeds([seed])
            return asyncio.run(c.run())

        base, _, _ = _timed(plain)
        tag = uuid.uuid4().hex[:8]
        raw, fr, seen = f"bench.raw.{tag}", f"bench.frontier.{tag}", f"bench.seen.{tag}"
        ensure_raw_topic(bootstrap, raw)
        ensure_crawl_topics(bootstrap, frontier_topic=fr, seen_topic=seen)
        pub = RecordPublisher(bootstrap, raw)
        frontier = KafkaFrontier(bootstrap, group=f"bench-{tag}", frontier_topic=fr, seen_topic=seen)
        c = Crawler(CrawlConfig(**cfg), frontier, pub.publish, pub.flush, log=lambda m: None)
        c.add_seeds([seed])
        kafka = asyncio.run(c.run())
        frontier.close()
    finally:
        stop.set()
        server.join(15)
    # Idle-exit waiting is not crawling: measure up to the last page.
    def rate(s):
        return s.published / max(s.seconds - cfg["idle_exit_s"], 1e-9)

    row = {"source": "crawl", "pages": kafka.published, "pages_per_s": rate(kafka),
           "cpu_ms_per_page": 1000 * kafka.cpu_s / max(kafka.published, 1),
           "no_publish_pages_per_s": rate(base),
           "no_publish_cpu_ms_per_page": 1000 * base.cpu_s / max(base.published, 1)}
    row["ratio"] = row["pages_per_s"] / row["no_publish_pages_per_s"]
    print(f"crawl  {row['pages_per_s']:8.1f} pages/s  {row['cpu_ms_per_page']:6.1f} ms CPU/page  "
          f"(without publishing {row['no_publish_pages_per_s']:.1f} pages/s, {row['no_publish_cpu_ms_per_page']:.1f} "
          f"ms CPU/page)  ratio {row['ratio']:.2f}  [{kafka.published} pages]")
    return row


def _ingest(bootstrap: str, source, tmp: Path):
    from iolayer.publisher import RecordPublisher
    from streams.sources.progress import CheckpointStore, TopicWatch
    from streams.sources.runner import IngestRunner, ensure_raw_topic

    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    ensure_raw_topic(bootstrap, topic)
    watch = TopicWatch(bootstrap, topic)
    runner = IngestRunner(lambda: RecordPublisher(bootstrap, topic), watch, CheckpointStore(tmp / uuid.uuid4().hex),
                          progress=False, log=lambda m: None)
    summary, wall, cpu = _timed(lambda: runner.run(source, "bench"))
    watch.close()
    return summary, wall, cpu


def _read_only(source):
    n = nbytes = records = 0
    for key in source.inputs():
        for it in source.read(key, None):
            records += 1
            nbytes += it.n_bytes
            n += it.doc is not None
    return n, nbytes, records


def bench_warc(bootstrap: str, tmp: Path, extractor: str) -> dict:
    from streams.sources.warc import WarcSource

    src = WarcSource([DATA / "warc"], extractor=extractor)
    (n, nbytes, records), wall0, cpu0 = _timed(lambda: _read_only(src))
    s, wall, cpu = _ingest(bootstrap, src, tmp)
    recs = s.published + sum(s.skipped.values())
    row = {"source": f"warc ({extractor})", "records": recs, "records_per_s": recs / wall,
           "mb_per_s": s.bytes_in / 1e6 / wall, "no_publish_records_per_s": records / wall0,
           "no_publish_mb_per_s": nbytes / 1e6 / wall0, "docs": s.published, "cpu_s": cpu, "no_publish_cpu_s": cpu0}
    row["ratio"] = row["records_per_s"] / row["no_publish_records_per_s"]
    print(f"warc   {row['records_per_s']:8.0f} records/s {row['mb_per_s']:6.2f} MB/s  "
          f"(without publishing {row['no_publish_records_per_s']:.0f} records/s, {row['no_publish_mb_per_s']:.2f} "
          f"MB/s)  ratio {row['ratio']:.2f}  CPU {1000 * cpu / recs:.2f} vs {1000 * cpu0 / max(records, 1):.2f} "
          f"ms/record  [{recs} records, {s.published} docs, {extractor}]")
    return row


def bench_files(bootstrap: str, tmp: Path) -> dict:
    from streams.sources.files import FileSource

    files = [DATA / "zh_reviews.jsonl.gz", DATA / "tox_en_davidson2017.jsonl.gz", DATA / "web_extracted_text.jsonl.gz"]
    src = FileSource(files, source="bench", licence="bench")
    (n, nbytes, _), wall0, cpu0 = _timed(lambda: _read_only(src))
    s, wall, cpu = _ingest(bootstrap, src, tmp)
    row = {"source": "files", "docs": s.published, "docs_per_s": s.published / wall,
           "mb_per_s": s.bytes_in / 1e6 / wall,
           "no_publish_docs_per_s": n / wall0, "cpu_s": cpu, "no_publish_cpu_s": cpu0}
    row["ratio"] = row["docs_per_s"] / row["no_publish_docs_per_s"]
    print(f"files  {row['docs_per_s']:8.0f} docs/s    {row['mb_per_s']:6.2f} MB/s  "
          f"(without publishing {row['no_publish_docs_per_s']:.0f} docs/s)  ratio {row['ratio']:.2f}  "
          f"CPU {1e6 * cpu / max(s.published, 1):.0f} vs {1e6 * cpu0 / max(n, 1):.0f} us/doc  [{s.published} docs]")
    return row


def extractors(limit: int | None) -> None:
    from streams.sources.extract import main_text

    pages = []
    with gzip.open(DATA / "html_pages.jsonl.gz", "rt") as fh:
        for line in fh:
            p = json.loads(line)
            if (p.get("gold_text") or "").strip():
                pages.append(p)
    pages = pages[:limit] if limit else pages

    def toks(s):
        return Counter(re.findall(r"\w+", s.lower()))

    for ex in ("trafilatura", "trafilatura-fast", "resiliparse"):
        c = time.process_time()
        prf = []
        for p in pages:
            pred, gold = toks(main_text(p["html"], ex)), toks(p["gold_text"])
            ov = sum((pred & gold).values())
            pr, rc = ov / max(sum(pred.values()), 1), ov / max(sum(gold.values()), 1)
            prf.append((pr, rc, 2 * pr * rc / (pr + rc) if ov else 0.0))
        ms = 1000 * (time.process_time() - c) / len(pages)
        avg = [sum(x[i] for x in prf) / len(prf) for i in range(3)]
        print(f"{ex:<17} F1 {avg[2]:.3f}  precision {avg[0]:.3f}  recall {avg[1]:.3f}  {ms:6.1f} ms CPU/page  "
              f"[{len(pages)} pages with gold text]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="sources", choices=["sources", "extractors"])
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--pages", type=int, default=300)
    ap.add_argument("--only", default="crawl,warc,files")
    ap.add_argument("--extractor", default="trafilatura")
    ap.add_argument("--limit", type=int, default=None, help="extractors: pages to use")
    ap.add_argument("--json", default=None, help="Also write the rows here.")
    args = ap.parse_args()
    if args.what == "extractors":
        extractors(args.limit)
        return
    cluster = None
    with tempfile.TemporaryDirectory(prefix="bench-sources-") as tmpdir:
        tmp = Path(tmpdir)
        bootstrap = args.bootstrap
        if bootstrap is None:
            from foundry.broker import KafkaCluster
            from tests.streams.sources.conftest import _free_pair

            cluster = KafkaCluster(tmp / "kafka", port=_free_pair())
            bootstrap = cluster.up(timeout=180)
        rows = []
        try:
            only = set(args.only.split(","))
            if "crawl" in only:
                rows.append(bench_crawl(bootstrap, args.pages))
            if "warc" in only:
                rows.append(bench_warc(bootstrap, tmp, args.extractor))
            if "files" in only:
                rows.append(bench_files(bootstrap, tmp))
        finally:
            if cluster is not None:
                cluster.down()
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
