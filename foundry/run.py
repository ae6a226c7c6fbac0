"""Runs the whole pipeline once over a corpus until it is drained: the main job
behind ``make demo`` and ``foundry run``.

It publishes the corpus to the raw topic, resolves the recipe (training a
tokenizer on the head of the stream when the recipe names none), starts a
stream worker, the shard writer and the ledger as processes, waits until every
raw document the run is responsible for is accounted for (one manifest row or
one ledger row), stops them and reports.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import pyarrow.parquet as pq

from iolayer.topics_admin import create_topics
from schemas.recipe import Recipe
from schemas import Topics
from streams.stages.tokenizer_training import train_tokenizer
from telemetry.console import progress_bar
from iolayer.ranges import committed, watermarks
from streams.topic_reader import read_raw_texts
from iolayer.kafka_config import confluent_config


@dataclass
class RunSummary:
    docs_in: int
    duplicates: int
    rejected_other: int
    docs_written: int
    tokens_written: int
    shards: int
    seconds: float
    docs_per_s: float
    mb_in: float
    mb_per_s: float
    # The workers' share, from the outcomes they put on the tokenized and rejections topics
    # (the sinks' flush delay left out): start-up ends with the first batch out, the
    # steady figures cover the documents after it until the last.
    startup_s: float  # from starting the services to the first outcome (imports, models, group joins)
    curated_s: float  # from starting the services until every document had its outcome
    startup_docs: int  # outcomes in the first batch out
    steady_docs_per_s: float
    steady_mb_per_s: float
    outcomes_sent: int  # by the workers; above docs_in when a rebalance made them redo a batch
    out_dir: str
    recipe_version: str
    rejections_by_reason: dict[str, int]
    peak_rss_mb: dict[str, float]
    cpu_s: dict[str, float]  # CPU seconds per service, last sample before stop
    steady_cpu_s_per_mb: dict[str, float]  # CPU seconds per MB from the first outcome to the last


def output_dir(out_root: str | Path, namespace: str, recipe: Recipe) -> Path:
    return Path(out_root) / namespace / recipe.version


def resolve_tokenizer(recipe: Recipe, bootstrap: str, topics: Topics, out_root: Path) -> Recipe:
    """A recipe without a tokenizer model gets one trained on the first
    ``train_mb`` of the raw topic (deterministic for the same topic head)."""
    if recipe.tokenizer.model:
        return recipe
    cfg = recipe.tokenizer
    texts = read_raw_texts(bootstrap, topics.raw, int(cfg.train_mb * 1024 * 1024))
    model = train_tokenizer(texts, out_root / "tokenizers", vocab_size=cfg.vocab_size,
                            model_type=cfg.model_type, max_mb=cfg.train_mb)
    return recipe.with_tokenizer(model)


def row_count(folder: Path) -> int:
    """Rows over the Parquet parts of a folder, from their footers (no column is read):
    what the drain loops poll."""
    return sum(pq.ParquetFile(part).metadata.num_rows for part in folder.glob("*.parquet"))


def count_rows(folder: Path) -> tuple[int, dict[str, int], int]:
    """(rows, rows by reason if a ledger, tokens if a manifest) over the Parquet parts of a folder."""
    rows, reasons, tokens = 0, {}, 0
    for part in sorted(folder.glob("*.parquet")):
        t = pq.read_table(part)
        rows += t.num_rows
        if "reason" in t.column_names:
            for r in t.column("reason").to_pylist():
                reasons[r] = reasons.get(r, 0) + 1
        if "n_tokens" in t.column_names:
            tokens += sum(t.column("n_tokens").to_pylist())
    return rows, reasons, tokens


class ServiceSet:
    """The worker, shard writer and ledger as child processes, with peak memory and CPU time tracking."""

    def __init__(self, bootstrap: str, recipe_path: Path, namespace: str, out_root: Path, log_dir: Path,
                 raw_topic: str = "foundry.raw", extra: dict[str, list[str]] | None = None):
        self.bootstrap, self.recipe_path, self.namespace, self.out_root = bootstrap, recipe_path, namespace, out_root
        self.raw_topic = raw_topic
        self.extra = extra or {}
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.peak: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def command(self, name: str) -> list[str]:
        base = [sys.executable, "-m", "foundry.cli"]
        common = ["--bootstrap", self.bootstrap, "--namespace", self.namespace, "--recipe", str(self.recipe_path)]
        if name == "worker":
            cmd = base + ["worker", *common, "--raw-topic", self.raw_topic]
        else:
            cmd = base + [name, *common, "--out", str(self.out_root)]
        return cmd + self.extra.get(name, [])

    def start(self, name: str, suffix: str = "") -> subprocess.Popen:
        key = name + suffix
        log = open(self.log_dir / f"{self.namespace}-{key}.log", "ab")
        p = subprocess.Popen(self.command(name), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[key] = p
        return p

    def start_all(self, workers: int = 1) -> None:
        for i in range(workers):
            self.start("worker", suffix=str(i) if i else "")
        self.start("shard-writer")
        self.start("ledger")

    def sample_usage(self) -> None:
        """Peak RSS and CPU seconds so far of each service (called about once a second)."""
        for name, p in self.procs.items():
            try:
                proc = psutil.Process(p.pid)
                rss = proc.memory_info().rss / 1e6
                cpu = proc.cpu_times()
            except psutil.Error:
                continue
            self.peak[name] = max(self.peak.get(name, 0.0), rss)
            self.cpu[name] = cpu.user + cpu.system

    def _fail(self, name: str, p: subprocess.Popen) -> RuntimeError:
        tail = (self.log_dir / f"{self.namespace}-{name}.log").read_text(errors="replace")[-3000:]
        return RuntimeError(f"{name} exited with {p.returncode}; last log lines:\n{tail}")

    def check_alive(self, allow_exit: set[str] = frozenset()) -> None:
        for name, p in self.procs.items():
            code = p.poll()
            if code is not None and not (name in allow_exit and code == 0):
                raise self._fail(name, p)

    def wait(self, name: str, timeout: float) -> None:
        """Wait for a service that stops by itself (a replay's sinks at the range end)."""
        p = self.procs[name]
        try:
            code = p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{name} did not finish within {timeout:.0f}s") from None
        if code != 0:
            raise self._fail(name, p)

    def stop(self, name: str | None = None, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        names = [name] if name else list(self.procs)
        for n in names:
            p = self.procs.get(n)
            if p is None or p.poll() is not None:
                continue
            os.killpg(p.pid, sig)
        for n in names:
            p = self.procs.pop(n, None)
            if p is None:
                continue
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def expected_docs(bootstrap: str, topics: Topics, recipe: Recipe) -> int:
    """Raw messages this recipe's ingest agent has not yet consumed."""
    marks = watermarks(bootstrap, topics.raw)
    done = committed(bootstrap, topics.worker_group(recipe.version), topics.raw, list(marks))
    return sum(high - max(done.get(p, 0), low) for p, (low, high) in marks.items())


class OutcomeMeter:
    """How many outcomes (kept documents and rejections) the workers have put on
    their output topics so far, from the topics' high watermarks, and the time and
    CPU use of each service when the first and when the last arrived. A redelivered
    batch after a rebalance counts twice, so the end may read a little early."""

    def __init__(self, bootstrap: str, topics: Topics, expected: int):
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer(confluent_config(bootstrap, {"group.id": "foundry-inspect",
                                                               "enable.auto.commit": False}))
        self._parts = [TopicPartition(t, p) for t in (topics.tokenized, topics.rejections)
                       for p in range(topics.partitions)]
        self.expected = expected
        self.base = self._count()
        self.first: tuple[float, int, dict[str, float]] | None = None  # (monotonic time, outcomes, cpu)
        self.last: tuple[float, int, dict[str, float]] | None = None

    def _count(self) -> int:
        return sum(self._consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in self._parts)

    def sample(self, cpu: dict[str, float]) -> None:
        if self.last is not None:
            return
        n = self._count() - self.base
        if n > 0 and self.first is None:
            self.first = (time.monotonic(), n, dict(cpu))
        if n >= self.expected:
            self.last = (time.monotonic(), n, dict(cpu))

    def close(self) -> int:
        """Stops reading; returns the outcomes sent in all."""
        try:
            return self._count() - self.base
        finally:
            self._consumer.close()


def wait_drained(services: ServiceSet, out_dir: Path, base_rows: int, expected: int, timeout: float,
                 progress=None, meter: OutcomeMeter | None = None, poll_s: float = 0.5) -> int:
    """Poll the output until ``expected`` new rows are there (``meter``, when given, is sampled too)."""
    deadline = time.monotonic() + timeout
    while True:
        services.check_alive()
        services.sample_usage()
        if meter is not None:
            meter.sample(services.cpu)
        done = row_count(out_dir / "manifest") + row_count(out_dir / "ledger") - base_rows
        if progress:
            progress(done, expected)
        if done >= expected:
            return done
        if time.monotonic() > deadline:
            raise TimeoutError(f"pipeline not drained after {timeout}s: {done} of {expected} documents accounted")
        time.sleep(poll_s)


def steady_figures(meter: OutcomeMeter, sent: int, t0: float, docs_in: int, mb_in: float) -> dict:
    """Start-up and the rate after it (RunSummary's fields), from the meter's first and last samples;
    ``sent``: the outcomes the workers sent in all."""
    out = {"outcomes_sent": sent, "startup_s": 0.0, "curated_s": 0.0, "startup_docs": 0,
           "steady_docs_per_s": 0.0, "steady_mb_per_s": 0.0, "steady_cpu_s_per_mb": {}}
    if meter.first is None or meter.last is None or not docs_in:
        return out
    (t1, n1, cpu1), (t2, _, cpu2) = meter.first, meter.last
    n1 = min(n1, docs_in)
    mb = mb_in * (docs_in - n1) / docs_in
    span = max(t2 - t1, 1e-3)
    out.update(startup_s=round(t1 - t0, 1), curated_s=round(t2 - t0, 1), startup_docs=n1,
               steady_docs_per_s=round((docs_in - n1) / span, 1), steady_mb_per_s=round(mb / span, 3),
               steady_cpu_s_per_mb={k: round((v - cpu1.get(k, 0.0)) / max(mb, 1e-9), 2) for k, v in cpu2.items()})
    return out


def summarize(out_dir: Path, recipe: Recipe, base: dict, docs_in: int, bytes_in: int, seconds: float,
              services: ServiceSet, steady: dict) -> RunSummary:
    m_rows, _, tokens = count_rows(out_dir / "manifest")
    l_rows, reasons, _ = count_rows(out_dir / "ledger")
    for r, n in base["reasons"].items():
        reasons[r] = reasons.get(r, 0) - n
    reasons = {r: n for r, n in sorted(reasons.items()) if n}
    dups = reasons.get("duplicate", 0)
    shards = len(list((out_dir / "shards").glob("*.tar")))
    return RunSummary(
        docs_in=docs_in, duplicates=dups, rejected_other=sum(reasons.values()) - dups,
        docs_written=m_rows - base["m_rows"], tokens_written=tokens - base["tokens"], shards=shards,
        seconds=round(seconds, 2), docs_per_s=round(docs_in / seconds, 1), mb_in=round(bytes_in / 1e6, 2),
        mb_per_s=round(bytes_in / 1e6 / seconds, 3), out_dir=str(out_dir), recipe_version=recipe.version,
        rejections_by_reason=reasons, peak_rss_mb={k: round(v, 1) for k, v in services.peak.items()},
        cpu_s={k: round(v, 1) for k, v in services.cpu.items()}, **steady,
    )


def snapshot_counts(out_dir: Path) -> dict:
    m_rows, _, tokens = count_rows(out_dir / "manifest")
    l_rows, reasons, _ = count_rows(out_dir / "ledger")
    return {"m_rows": m_rows, "l_rows": l_rows, "tokens": tokens, "reasons": reasons}


def summary_text(s: RunSummary) -> str:
    return json.dumps(asdict(s), indent=2, ensure_ascii=False)


def run_pipeline(bootstrap: str, recipe: Recipe, *, corpus: list[str] | None = None, n_generated: int = 5000,
                 seed: int = 0, namespace: str = "live", out_root: str | Path = "out", timeout: float = 1800.0,
                 raw_topic: str = "foundry.raw", workers: int = 1, echo=print) -> RunSummary:
    from iolayer.publisher import RecordPublisher
    from streams.sources.files import FileSource
    from streams.sources.synthetic import SyntheticConfig, SyntheticSource

    out_root = Path(out_root)
    topics = Topics(namespace=namespace, partitions=recipe.partitions, raw_name=raw_topic)
    create_topics(bootstrap, topics)
    source = FileSource(corpus) if corpus else SyntheticSource(SyntheticConfig(n_docs=n_generated, seed=seed))
    echo(f"publishing {'corpus ' + ', '.join(corpus) if corpus else f'{n_generated} generated documents'} "
         f"to {topics.raw}")
    pub = RecordPublisher(bootstrap, topics.raw)
    docs_in = bytes_in = 0
    t_pub = time.monotonic()
    for doc in source:
        pub.publish(doc)
        docs_in += 1
        bytes_in += len(doc.text.encode("utf-8", errors="replace"))
    pub.flush()
    echo(f"published {docs_in} documents ({bytes_in / 1e6:.1f} MB) in {time.monotonic() - t_pub:.1f}s")

    recipe = resolve_tokenizer(recipe, bootstrap, topics, out_root)
    out = output_dir(out_root, namespace, recipe)
    out.mkdir(parents=True, exist_ok=True)
    recipe_path = out / "recipe.yaml"
    recipe.save(recipe_path)
    expected = expected_docs(bootstrap, topics, recipe)
    echo(f"recipe {recipe.version} (tokenizer {recipe.tokenizer.version}); {expected} documents to process")
    base = snapshot_counts(out)
    services = ServiceSet(bootstrap, recipe_path, namespace, out_root, out_root / "logs", raw_topic)
    meter = OutcomeMeter(bootstrap, topics, expected)
    t0 = time.monotonic()
    services.start_all(workers)
    try:
        # A bar with rate and time left on a terminal (stderr); off one, the last state once.
        with progress_bar("documents accounted for", expected) as bar:
            wait_drained(services, out, base["m_rows"] + base["l_rows"], expected, timeout,
                         lambda done, total: bar(done), meter)
        seconds = time.monotonic() - t0
    finally:
        services.stop()
        sent = meter.close()
    steady = steady_figures(meter, sent, t0, expected, bytes_in / 1e6)
    return summarize(out, recipe, base, expected, bytes_in, seconds, services, steady)
