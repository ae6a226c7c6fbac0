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

from foundry.admin import create_topics
from foundry.recipe import Recipe
from schemas import Topics
from streams.stages.tokenizer_training import train_tokenizer
from streams.topic_reader import committed, read_raw_texts, watermarks


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
    startup_s: float  # from starting the services to the first document out (Faust joins its groups)
    steady_docs_per_s: float  # after start-up
    out_dir: str
    recipe_version: str
    rejections_by_reason: dict[str, int]
    peak_rss_mb: dict[str, float]
    cpu_s: dict[str, float]  # CPU seconds per service, last sample before stop
    steady_cpu_s_per_mb: dict[str, float]  # after start-up (imports, models, group joins): steady_cpu_per_mb


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
        self.at_first_output: tuple[dict[str, float], int] | None = None  # (cpu, documents done) then

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


def wait_drained(services: ServiceSet, out_dir: Path, base_rows: int, expected: int, timeout: float,
                 progress=None, first_seen: list | None = None) -> int:
    """Poll the output until ``expected`` new rows are there. ``first_seen`` (a list)
    receives the time the first row appeared: the services' start-up ends there."""
    deadline = time.monotonic() + timeout
    while True:
        services.check_alive()
        services.sample_usage()
        shard_rows = count_rows(out_dir / "manifest")[0]
        ledger_rows = count_rows(out_dir / "ledger")[0]
        done = shard_rows + ledger_rows - base_rows
        if first_seen is not None and done > 0 and not first_seen:
            first_seen.append(time.monotonic())
            services.at_first_output = (dict(services.cpu), done)
        if progress:
            progress(done, expected)
        if done >= expected:
            return done
        if time.monotonic() > deadline:
            raise TimeoutError(f"pipeline not drained after {timeout}s: {done} of {expected} documents accounted")
        time.sleep(1.0)


def steady_cpu_per_mb(services: ServiceSet, docs_in: int, mb_in: float) -> dict[str, float]:
    """CPU seconds per MB after start-up: the CPU used since the first output over the
    share of the input still to do then (empty when no output was seen)."""
    if not services.at_first_output or not docs_in:
        return {}
    cpu0, done0 = services.at_first_output
    mb_left = mb_in * (1 - done0 / docs_in)
    if mb_left <= 0:
        return {}
    return {k: round((v - cpu0.get(k, 0.0)) / mb_left, 2) for k, v in services.cpu.items()}


def summarize(out_dir: Path, recipe: Recipe, base: dict, docs_in: int, bytes_in: int, seconds: float,
              services: ServiceSet, startup: float = 0.0) -> RunSummary:
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
        mb_per_s=round(bytes_in / 1e6 / seconds, 3), startup_s=round(startup, 1),
        steady_docs_per_s=round(docs_in / max(seconds - startup, 1e-3), 1), out_dir=str(out_dir),
        recipe_version=recipe.version,
        rejections_by_reason=reasons, peak_rss_mb={k: round(v, 1) for k, v in services.peak.items()},
        cpu_s={k: round(v, 1) for k, v in services.cpu.items()},
        steady_cpu_s_per_mb=steady_cpu_per_mb(services, docs_in, bytes_in / 1e6),
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
    from streams.publisher import RecordPublisher
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
    t0 = time.monotonic()
    services.start_all(workers)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - last[0] >= 5:
            last[0] = time.monotonic()
            echo(f"  {done}/{total} documents accounted for ({time.monotonic() - t0:.0f}s)")

    first: list = []
    try:
        wait_drained(services, out, base["m_rows"] + base["l_rows"], expected, timeout, progress, first)
        seconds = time.monotonic() - t0
    finally:
        services.stop()
    startup = (first[0] - t0) if first else 0.0
    return summarize(out, recipe, base, expected, bytes_in, seconds, services, startup)
