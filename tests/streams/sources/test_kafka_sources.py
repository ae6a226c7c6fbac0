"""Sources against the real broker: the CLI commands end to end, killed and resumed.

Each test uses its own topics (and consumer group), so tests never see each other's data.
"""
from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from streams.sources.progress import CheckpointStore
from streams.sources.warc import WarcSource

from .helpers import id_counts, read_topic, run_cli, spawn_cli

pytestmark = pytest.mark.kafka

FAST_WARCS = ["pywb-iana.warc.gz", "cc-main-2020-34-excerpt.resiliparse.warc.gz", "dolma-sample-0000.warc.gz",
              "dolma-sample-0001.warc.gz", "whirlwind.warc.wet.gz", "IAH-urls-wget.warc.gz"]


def _expected_ids(paths, extractor="resiliparse") -> set[str]:
    src = WarcSource(paths, extractor=extractor)
    return {it.doc.id for key in src.inputs() for it in src.read(key) if it.doc is not None}


def _wait_for(pred, timeout: float, what: str, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (rc={proc.returncode}) before {what}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_ingest_warc_end_to_end(kafka, topic, shared_data, tmp_path):
    summary = tmp_path / "s.json"
    r = run_cli("ingest", "warc", str(shared_data / "warc"), "--bootstrap", kafka, "--raw-topic", topic,
                "--source", "cc", "--licence", "cc-tou", "--extractor", "resiliparse", "--state-dir",
                str(tmp_path / "state"), "--summary-json", str(summary), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "documents published" in r.stdout and "not documents" in r.stdout
    docs = read_topic(kafka, topic)
    assert set(id_counts(docs).values()) == {1}
    assert {d.id for d in docs} == _expected_ids([shared_data / "warc"])
    assert all(d.source == "cc" and d.licence == "cc-tou" for d in docs)
    s = json.loads(summary.read_text())
    assert s["published"] == len(docs) == 80 and s["skipped"]["revisit"] == 133
    # A second run finds every input done and publishes nothing.
    r2 = run_cli("ingest", "warc", str(shared_data / "warc"), "--bootstrap", kafka, "--raw-topic", topic,
                 "--state-dir", str(tmp_path / "state"), "--no-progress")
    assert r2.returncode == 0 and "14 already done" in r2.stdout
    assert len(read_topic(kafka, topic)) == 80


def test_ingest_warc_killed_and_resumed_publishes_each_record_once(kafka, topic, shared_data, tmp_path):
    paths = [str(shared_data / "warc" / n) for n in FAST_WARCS]
    state = tmp_path / "state"
    args = ["ingest", "warc", *paths, "--bootstrap", kafka, "--raw-topic", topic, "--extractor", "resiliparse",
            "--state-dir", str(state), "--flush-every", "3", "--no-progress"]
    proc = spawn_cli(*args, log=tmp_path / "run1.log")
    store = CheckpointStore(state)
    keys = [os.fspath(Path(p).resolve()) for p in paths]

    def progressed() -> bool:  # some input checkpointed past its start, and not everything done
        cps = [store.load(k) for k in keys]
        return any(cp and cp.published >= 6 for cp in cps)

    try:
        _wait_for(progressed, 90, "the first checkpoints", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    first = read_topic(kafka, topic)
    expected = _expected_ids(paths)
    assert 0 < len(first) < len(expected), "the kill came too late to test anything"
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    docs = read_topic(kafka, topic)
    counts = id_counts(docs)
    assert set(counts) == expected
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1]


def test_ingest_files_and_generate(kafka, topic, tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text("\n".join(json.dumps({"body": f"doc {i}", "key": f"k{i}"}) for i in range(50))
                                    + "\n{broken\n")
    r = run_cli("ingest", "files", str(corpus), "--bootstrap", kafka, "--raw-topic", topic, "--source", "books",
                "--licence", "CC-BY-4.0", "--text-field", "body", "--id-field", "key",
                "--state-dir", str(tmp_path / "state"), "--no-progress")
    assert r.returncode == 0, r.stderr
    docs = read_topic(kafka, topic)
    assert len(docs) == 51 and sum(1 for d in docs if d.defect == "malformed") == 1
    assert all(d.source == "books" and d.licence == "CC-BY-4.0" for d in docs)
    r = run_cli("generate", "--n-docs", "300", "--seed", "5", "--bootstrap", kafka, "--raw-topic", topic,
                "--state-dir", str(tmp_path / "state"), "--no-progress")
    assert r.returncode == 0, r.stderr
    gen = [d for d in read_topic(kafka, topic) if d.source == "synthetic"]
    assert len(gen) == 300 and all(d.meta["synthetic"] for d in gen)
    assert {"near_dup", "exact_dup", "original"} <= {d.meta["kind"] for d in gen}


def test_broker_down_is_a_clear_error(tmp_path):
    r = run_cli("generate", "--n-docs", "5", "--bootstrap", "127.0.0.1:39198", "--state-dir", str(tmp_path),
                "--no-progress", timeout=60)
    assert r.returncode == 1 and "no Kafka broker answers at 127.0.0.1:39198" in r.stderr
    assert "Traceback" not in r.stderr


def _crawl_args(kafka, tag, seeds, *extra):
    args = ["crawl", "--bootstrap", kafka, "--raw-topic", f"test.sources.raw.{tag}",
            "--frontier-topic", f"test.crawl.frontier.{tag}", "--seen-topic", f"test.crawl.seen.{tag}",
            "--group", f"test-crawler-{tag}", "--timeout", "0.5", "--backoff", "0.05", "--max-bytes", "100000",
            "--extractor", "resiliparse", "--checkpoint-s", "0.3", "--no-progress", *extra]
    for s in seeds:
        args += ["--seed", s]
    return args


def test_crawl_killed_and_resumed(kafka, site_factory, tmp_path):
    site = site_factory(n_pages=40, specials=False)
    tag = uuid.uuid4().hex[:8]
    args = _crawl_args(kafka, tag, [site.url("/")], "--delay", "0.08", "--idle-exit", "2")
    proc = spawn_cli(*args, log=tmp_path / "crawl1.log")
    try:
        _wait_for(lambda: sum(1 for h in site.log if h.path.startswith("/page/")) >= 15, 60, "15 pages fetched",
                  proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    first_run = Counter(h.path for h in site.log)
    n_first = len(site.log)
    r = run_cli(*args, timeout=120)
    assert r.returncode == 0, r.stderr + (tmp_path / "crawl1.log").read_text()
    second_run = Counter(h.path for h in site.log[n_first:])
    docs = read_topic(kafka, f"test.sources.raw.{tag}")
    pages = {d.url.rsplit("/", 2)[-2] + "/" + d.url.rsplit("/", 1)[-1] for d in docs if "/page/" in d.url}
    assert pages == {f"page/{i}" for i in range(40)}  # the crawl finished
    # It resumed rather than started over: pages finished before the kill were not fetched again
    # (except those inside the last, unflushed checkpoint window).
    again = [p for p in second_run if p.startswith("/page/") and first_run[p]]
    assert len(again) <= 6, again
    assert second_run["/"] == 0  # the seed was seen before the kill
    counts = id_counts(docs)
    assert sum(v - 1 for v in counts.values()) <= len(again)  # republished only what was fetched again


def test_two_crawlers_share_hosts_politely(kafka, site_factory, tmp_path):
    site = site_factory(n_pages=4, ports=6, specials=False)
    tag = uuid.uuid4().hex[:8]
    seeds = [site.url("/", i) for i in range(6)]
    args = _crawl_args(kafka, tag, seeds, "--delay", "0.3", "--idle-exit", "3", "--max-depth", "1")
    procs = [spawn_cli(*args, "--summary-json", str(tmp_path / f"s{i}.json"), log=tmp_path / f"c{i}.log")
             for i in range(2)]
    for p in procs:
        p.wait(120)
    assert [p.returncode for p in procs] == [0, 0], [(tmp_path / f"c{i}.log").read_text()[-2000:] for i in range(2)]
    per_port = defaultdict(list)
    for h in site.log:
        per_port[h.port].append(h.t)
    assert len(per_port) == 6
    for times in per_port.values():
        times.sort()
        gaps = [b - a for a, b in zip(times, times[1:])]
        # Two processes on one host would give gaps near 0; arrival times jitter on a loaded machine.
        assert min(gaps) >= 0.3 * 0.5, gaps
        assert sum(gaps) / len(gaps) >= 0.3, gaps
    summaries = [json.loads((tmp_path / f"s{i}.json").read_text()) for i in range(2)]
    docs = read_topic(kafka, f"test.sources.raw.{tag}")
    assert len({d.url for d in docs}) == 6 * (4 + 2)  # index, about, 4 pages per host
    assert sum(s["published"] for s in summaries) >= 36
