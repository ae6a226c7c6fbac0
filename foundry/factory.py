"""``foundry up``: the whole factory as one supervised system.

    sources ──► raw ──► stream workers ──► shard writer ──► shards ──► continuous trainer
                           ▲    │                                          │ value scores
                           │    └─► ledger                                 ▼
                           └──────── budgets ◄──────── budget agent ◄──── values

Order on the way up: the broker (started when none answers and ``kafka_home``
is set), the topics, the resolved recipe, then the sinks, workers, budget agent
and trainer, and last the sources. On the way down (SIGTERM, Ctrl-C, ``foundry
down`` or the end of ``--for``): the sources first; then the pipeline drains
(the workers catch up with the raw topic and every document they took is in a
manifest or the ledger, up to ``drain_timeout_s``); then the trainer (it writes
a checkpoint) and the budget agent; then the workers and the sinks; the broker
last, if this factory started it. ``summary.json`` in the run folder has the
loop's figures (``foundry/factory_summary.py``).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from foundry.factory_config import FactoryConfig, SourceSettings
from foundry.supervisor import ProcessSpec, Supervisor, pid_alive
from schemas import BudgetUpdate, SchemaError, Topics
from schemas.recipe import RECIPES_DIR, Recipe, load_recipe

PID_FILE = "factory.pid"
STOP_ORDER = (("source",), ("trainer", "budget"), ("worker",), ("sink",))


class FactoryError(RuntimeError):
    pass


def running_pid(run_dir: str | Path) -> int | None:
    """The pid of the factory supervising ``run_dir``, if one is alive."""
    try:
        pid = int((Path(run_dir) / PID_FILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def stop_leftovers(run_dir: Path, echo=print, timeout: float = 30.0) -> list[str]:
    """Stop the processes a factory that died without its ordered stop (SIGKILL, a crash) left running: the
    ones its ``ps.json`` lists that are still alive and still ``foundry`` processes (a reused pid is not)."""
    from foundry.supervisor import read_state

    state = read_state(run_dir)
    if not state or state.get("supervisor_alive"):
        return []
    left = []
    for row in state.get("processes", []):
        pid = row.get("pid")
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pid_alive(pid) and "foundry.cli" in cmd:
            left.append((row["name"], pid))
    if not left:
        return []
    echo(f"stopping {len(left)} processes left running by a factory that did not stop in order: "
         + ", ".join(n for n, _ in left))
    for _, pid in left:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(pid) for _, pid in left):
        time.sleep(0.2)
    for _, pid in left:
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
    return [n for n, _ in left]


def resolve_recipe(name_or_path: str) -> Recipe:
    shipped = RECIPES_DIR / f"{name_or_path}.yaml"
    path = shipped if not Path(name_or_path).exists() and shipped.exists() else Path(name_or_path)
    return load_recipe(path)


def _cli() -> list[str]:
    return [sys.executable, "-m", "foundry.cli"]


def _sets(pairs: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for k, v in pairs.items():
        out += ["--set", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    return out


def source_command(src: SourceSettings, cfg: FactoryConfig) -> list[str]:
    common = ["--bootstrap", cfg.bootstrap, "--raw-topic", cfg.raw_topic, "--no-progress", "--wait", "60"]
    state = ["--state-dir", str(cfg.run_path / "sources" / src.name)]  # resumable sources
    pacing = (["--rate", str(src.rate)] if src.rate else []) + (
        ["--flood-after", str(src.flood_after)] if src.flood_after is not None else []) + (
        ["--flood-docs", str(src.flood_docs)] if src.flood_docs is not None else [])
    if src.kind == "generator":
        cmd = ["generate", "--kind", src.gen_kind, "--n-docs", str(src.n_docs), "--seed", str(src.seed),
               "--source", src.name, *pacing, *state]
    elif src.kind == "files":
        cmd = ["ingest", "files", *src.paths, "--source", src.name, "--licence", src.licence or "unknown",
               *pacing, *state]
        if src.watch_s:
            cmd += ["--watch", str(src.watch_s)]
    elif src.kind == "warc":
        cmd = ["ingest", "warc", *src.paths, "--source", src.name, *state]
        cmd += ["--licence", src.licence] if src.licence else []
    else:
        cmd = ["crawl", *[a for s in src.seeds for a in ("--seed", s)], "--source", src.name]
    return _cli() + cmd + common + src.extra_args


def process_specs(cfg: FactoryConfig, recipe_path: Path) -> list[ProcessSpec]:
    """Every process of the factory, in start order (sinks before the workers that feed them)."""
    base = ["--bootstrap", cfg.bootstrap, "--namespace", cfg.namespace]
    pipe = base + ["--recipe", str(recipe_path)]
    specs = [ProcessSpec("shard-writer", "sink", _cli() + ["shard-writer", *pipe, "--out", cfg.out]),
             ProcessSpec("ledger", "sink", _cli() + ["ledger", *pipe, "--out", cfg.out])]
    specs += [ProcessSpec(f"worker-{i}", "worker", _cli() + ["worker", *pipe, "--raw-topic", cfg.raw_topic])
              for i in range(cfg.workers)]
    if cfg.budget.enabled:
        specs.append(ProcessSpec("budget", "budget", _cli() + [
            "budget", *base, "--window-tokens", str(cfg.budget.window_tokens),
            "--window-s", str(cfg.budget.window_s), *_sets(cfg.budget.set)]))
    if cfg.trainer.enabled:
        t = cfg.trainer
        specs.append(ProcessSpec("trainer", "trainer", _cli() + [
            "train", *base, "--config", t.config, "--run-dir", str(cfg.run_path / "trainer"), "--quiet",
            *_sets({"torch_threads": t.threads, **t.set})], nice=t.nice,
            env={"OMP_NUM_THREADS": str(t.threads), "MKL_NUM_THREADS": str(t.threads)}))
    specs += [ProcessSpec(f"source-{s.name}", "source", source_command(s, cfg), restart="on-failure")
              for s in cfg.sources]
    if cfg.metrics_port:
        for i, spec in enumerate(specs):
            spec.metrics_port = cfg.metrics_port + i
    return specs


def _retrying(fn, timeout: float = 60.0):
    """``fn()``, retried for up to ``timeout`` seconds while the broker refuses (a topic just created is not
    in the metadata yet, or has no leader yet: NOT_LEADER_FOR_PARTITION, which librdkafka does not mark
    retriable)."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (KafkaException, RuntimeError):  # RuntimeError: iolayer's "topic ...: <metadata error>"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class BudgetRecorder(threading.Thread):
    """Appends every BudgetUpdate that appears on the budgets topic to ``budgets.jsonl`` with the time
    it was seen: the budget history (the topic is compacted, so it keeps only the newest)."""

    def __init__(self, bootstrap: str, topic: str, path: Path):
        super().__init__(daemon=True, name="budget-recorder")
        self.bootstrap, self.topic, self.path = bootstrap, topic, path
        self._halt = threading.Event()
        self.versions: set[int] = set()

    def run(self) -> None:
        from confluent_kafka import Consumer

        from iolayer.kafka_config import confluent_config

        consumer = Consumer(confluent_config(self.bootstrap, {
            "group.id": f"foundry-recorder-{os.getpid()}", "enable.auto.commit": False,
            "auto.offset.reset": "earliest"}))
        consumer.subscribe([self.topic])
        try:
            while not self._halt.is_set():
                msg = consumer.poll(0.5)
                if msg is None or msg.error() or msg.value() is None:
                    continue
                try:
                    update = BudgetUpdate.decode(msg.value())
                except SchemaError:
                    continue
                if update.budget_version in self.versions:
                    continue
                self.versions.add(update.budget_version)
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"seen": round(time.time(), 3), **update.to_dict()}) + "\n")
        finally:
            consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


class Factory:
    def __init__(self, cfg: FactoryConfig, echo=print, progress=None):
        """``progress(elapsed_s, documents_accounted, budget_versions)``, when given, is called about every
        two seconds while the factory runs (the demo's progress bar)."""
        self.cfg, self.echo, self.progress = cfg, echo, progress
        self.run_dir = cfg.run_path
        self.cluster = None
        self.stop_requested = threading.Event()
        self.supervisor: Supervisor | None = None
        self.baseline: dict[str, Any] = {}

    # -- up -------------------------------------------------------------------------------
    def _broker(self) -> None:
        from iolayer.publisher import BrokerUnavailable, check_broker

        try:
            check_broker(self.cfg.bootstrap, timeout=5, quiet=True)
            return
        except BrokerUnavailable:
            if self.cfg.kafka_home is None:
                raise FactoryError(f"no Kafka broker answers at {self.cfg.bootstrap} (and kafka_home is not set, "
                                   f"so none is started)") from None
        from foundry.broker import KafkaCluster

        from telemetry.console import waiting

        port = int(self.cfg.bootstrap.rsplit(":", 1)[1])
        self.cluster = KafkaCluster(Path(self.cfg.kafka_home), port=port)
        with waiting(f"waiting for the broker (starting Kafka in {self.cfg.kafka_home}, port {port})"):
            self.cluster.up()

    def prepare(self) -> tuple[Recipe, Path, Topics]:
        from iolayer.topics_admin import create_topics
        from foundry.run import output_dir, snapshot_counts
        from iolayer.ranges import committed, watermarks

        recipe = resolve_recipe(self.cfg.recipe)
        if not recipe.tokenizer.model:
            raise FactoryError("the factory's recipe must name a tokenizer model (tokenizer.model); "
                               "`foundry run` can train one on the head of a corpus")
        self._broker()
        topics = Topics(namespace=self.cfg.namespace, partitions=recipe.partitions, raw_name=self.cfg.raw_topic)
        kw = {"replication": self.cfg.replication} if self.cfg.replication else {}
        create_topics(self.cfg.bootstrap, topics, **kw)
        out = output_dir(self.cfg.out, self.cfg.namespace, recipe)
        out.mkdir(parents=True, exist_ok=True)
        recipe_path = out / "recipe.yaml"
        recipe.save(recipe_path)
        marks = _retrying(lambda: watermarks(self.cfg.bootstrap, topics.raw))  # new topics elect leaders first
        done = committed(self.cfg.bootstrap, topics.worker_group(recipe.version), topics.raw, list(marks))
        self.baseline = {"raw_start": {str(p): max(done.get(p, 0), low) for p, (low, _) in marks.items()},
                         "rows": snapshot_counts(out), "started": time.time(),
                         "parts": sorted(f"{d}/{f.name}" for d in ("manifest", "ledger")
                                         for f in (out / d).glob("*.parquet"))}
        (self.run_dir / "baseline.json").write_text(json.dumps(self.baseline, indent=1, default=str))
        return recipe, out, topics

    def run(self, for_seconds: float | None = None, until_done: bool = False) -> dict[str, Any]:
        """Bring the factory up, supervise until told to stop (or ``for_seconds``, or with ``until_done``
        until every source has reached its end and the pipeline has drained), bring it down;
        returns the summary."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        other = running_pid(self.run_dir)
        if other is not None and other != os.getpid():
            raise FactoryError(f"a factory is already running in {self.run_dir} (pid {other}): "
                               f"`foundry ps` shows it, `foundry down` stops it")
        stop_leftovers(self.run_dir, self.echo)
        (self.run_dir / PID_FILE).write_text(f"{os.getpid()}\n")
        for name in ("budgets.jsonl", "summary.json"):
            (self.run_dir / name).unlink(missing_ok=True)
        # SIGHUP too: a closed terminal must stop the factory in order, not orphan its processes
        old = {sig: signal.signal(sig, lambda *_: self.stop_requested.set())
               for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        recorder = None
        try:
            recipe, out, topics = self.prepare()
            c = self.cfg
            sup = self.supervisor = Supervisor(
                self.run_dir, backoff_initial_s=c.restart.backoff_initial_s, backoff_max_s=c.restart.backoff_max_s,
                stable_s=c.restart.stable_s,
                info={"bootstrap": c.bootstrap, "namespace": c.namespace, "raw_topic": c.raw_topic,
                      "out_dir": str(out), "recipe_version": recipe.version, "phase": "starting",
                      "broker_started": self.cluster is not None})
            for spec in process_specs(c, out / "recipe.yaml"):
                sup.add(spec)
            recorder = BudgetRecorder(c.bootstrap, topics.budgets, self.run_dir / "budgets.jsonl")
            recorder.start()
            sup.start()
            sup.info["phase"] = "running"
            sup.write_state()
            self.echo(f"factory up: {len(sup.children)} processes, output {out}, run folder {self.run_dir}")
            t0 = time.monotonic()
            deadline = None if for_seconds is None else t0 + for_seconds
            next_tick = t0
            while not self.stop_requested.is_set() and (deadline is None or time.monotonic() < deadline):
                sup.poll()
                if self.progress is not None and time.monotonic() >= next_tick:
                    next_tick += 2.0
                    self.progress(time.monotonic() - t0, self._accounted(out), len(recorder.versions))
                if until_done and sup.settled("source") and self._drained(out, topics, recipe):
                    break
                self.stop_requested.wait(0.5)
            return self.shutdown(recipe, out, topics, recorder)
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            if recorder is not None and recorder.is_alive():
                recorder.stop()
            if self.supervisor is not None:
                for kinds in STOP_ORDER:  # whatever an error left running
                    self.supervisor.stop(kinds, timeout=30)
            if self.cluster is not None:
                self.echo("stopping the Kafka broker this factory started")
                self.cluster.down()
                self.cluster = None
            (self.run_dir / PID_FILE).unlink(missing_ok=True)

    # -- down -----------------------------------------------------------------------------
    def _accounted(self, out: Path) -> int:
        """Manifest and ledger rows written since the factory came up."""
        from foundry.run import row_count

        base = self.baseline["rows"]
        return row_count(out / "manifest") + row_count(out / "ledger") - base["m_rows"] - base["l_rows"]

    def _drained(self, out: Path, topics: Topics, recipe: Recipe) -> bool:
        from iolayer.ranges import committed, watermarks

        marks = watermarks(self.cfg.bootstrap, topics.raw)
        done = committed(self.cfg.bootstrap, topics.worker_group(recipe.version), topics.raw, list(marks))
        if any(done.get(p, 0) < high for p, (_, high) in marks.items()):
            return False
        start = self.baseline["raw_start"]
        expected = sum(high - int(start.get(str(p), 0)) for p, (_, high) in marks.items())
        return self._accounted(out) >= expected

    def shutdown(self, recipe: Recipe, out: Path, topics: Topics, recorder: BudgetRecorder) -> dict[str, Any]:
        from foundry.factory_summary import collect_summary

        sup = self.supervisor
        sup.info["phase"] = "draining"
        self.echo("stopping the sources, then draining the pipeline ...")
        sup.stop(["source"])
        drained = sup.wait_until(lambda: self._drained(out, topics, recipe), self.cfg.drain_timeout_s, every_s=1.0)
        if not drained:
            self.echo(f"the pipeline did not drain within {self.cfg.drain_timeout_s:.0f}s; stopping anyway "
                      f"(the rest is processed when the factory comes up again)")
        sup.info["phase"] = "stopping"
        for kinds in STOP_ORDER[1:]:
            sup.stop(kinds)
        time.sleep(1.0)  # the last BudgetUpdate, if one was just sent
        recorder.stop()
        summary = collect_summary(self.run_dir, out, self.cfg, self.baseline, topics, drained=drained,
                                  restarts={n: ch.restarts for n, ch in sup.children.items()})
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
        sup.info["phase"] = "stopped"
        sup.write_state()
        return summary
