"""A small real pipeline (worker, shard writer, ledger) with an exporter per process and
a ps.json as the factory writes it: what the metrics, status and dashboard tests look at."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from iolayer.topics_admin import create_topics
from foundry.run import ServiceSet, count_rows, expected_docs, output_dir, resolve_tokenizer, wait_drained
from schemas import Topics
from iolayer.publisher import RecordPublisher
from streams.sources.files import FileSource
from tests.foundry.pipeline_helpers import small_recipe, write_corpus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MeteredServices(ServiceSet):
    """ServiceSet whose children each get their own metrics port and process name."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ports: dict[str, int] = {}
        self.started: dict[str, float] = {}

    def command(self, name: str) -> list[str]:
        base = [sys.executable, "-m", "foundry.cli"]
        common = ["--bootstrap", self.bootstrap, "--namespace", self.namespace]
        if name == "trainer":  # the tiny config: each step takes milliseconds
            return base + ["train", *common, "--config", "tiny", "--run-dir", str(self.log_dir.parent / "factory" /
                                                                             "trainer"), "--quiet"]
        if name == "budget":
            return base + ["budget", *common, "--window-tokens", "2000", "--window-s", "1"]
        return super().command(name)

    def start(self, name: str, suffix: str = "") -> subprocess.Popen:
        key = name + suffix
        self.ports.setdefault(key, free_port())
        env = {**os.environ, "FOUNDRY_METRICS_PORT": str(self.ports[key]), "FOUNDRY_PROCESS": key}
        log = open(self.log_dir / f"{self.namespace}-{key}.log", "ab")
        p = subprocess.Popen(self.command(name), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                             env=env)
        self.procs[key] = p
        self.started[key] = time.time()
        return p


@dataclass
class LiveRun:
    bootstrap: str
    namespace: str
    out: Path  # the recipe's output folder
    run_dir: Path  # holds ps.json
    services: MeteredServices
    docs_in: int

    def outcomes(self) -> dict:
        """The run's own figures, from its manifests and ledger."""
        kept, _, tokens = count_rows(self.out / "manifest")
        rejected, reasons, _ = count_rows(self.out / "ledger")
        return {"docs_in": self.docs_in, "kept": kept, "rejected": rejected, "reasons": reasons,
                "tokens": tokens, "shards": len(list((self.out / "shards").glob("*.tar")))}


def write_ps(run: LiveRun, state: str = "running") -> None:
    s = run.services
    procs = [{"name": k, "kind": k.rstrip("0123456789").rstrip("-"), "pid": p.pid, "state": state,
              "started": s.started[k], "restarts": 0, "metrics_port": s.ports[k],
              "log": str(s.log_dir / f"{s.namespace}-{k}.log")} for k, p in s.procs.items()]
    doc = {"started": min(s.started.values()), "bootstrap": run.bootstrap, "namespace": run.namespace,
           "out_dir": str(run.out), "processes": procs}
    tmp = run.run_dir / "ps.json.tmp"
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, run.run_dir / "ps.json")


@contextmanager
def live_run(bootstrap: str, tmp_path: Path, namespace: str, n_docs: int = 300, loop: bool = False):
    """Publishes ``n_docs`` documents (duplicates and bad lines among them), runs the services
    until every document is accounted for and yields with the services still up. ``loop``:
    the trainer (tiny config) and the budget agent run too."""
    corpus = tmp_path / "corpus.jsonl.gz"
    write_corpus(corpus, n_docs, dup_every=6)
    base = small_recipe()
    recipe = type(base).model_validate({**base.model_dump(by_alias=True), "curation": [{"op": "near_dedup"}]})
    topics = Topics(namespace=namespace, partitions=recipe.partitions, raw_name=f"{namespace}.raw")
    create_topics(bootstrap, topics)
    pub = RecordPublisher(bootstrap, topics.raw)
    for doc in FileSource([corpus]):
        pub.publish(doc)
    pub.flush()
    recipe = resolve_tokenizer(recipe, bootstrap, topics, tmp_path / "out")
    out = output_dir(tmp_path / "out", namespace, recipe)
    out.mkdir(parents=True)
    recipe.save(out / "recipe.yaml")
    total = expected_docs(bootstrap, topics, recipe)
    run_dir = tmp_path / "factory"
    run_dir.mkdir(exist_ok=True)
    services = MeteredServices(bootstrap, out / "recipe.yaml", namespace, tmp_path / "out", tmp_path / "logs",
                               topics.raw)
    run = LiveRun(bootstrap, namespace, out, run_dir, services, total)
    services.start_all()
    if loop:
        services.start("trainer")
        services.start("budget")
    write_ps(run)
    try:
        wait_drained(services, out, 0, total, timeout=300)
        yield run
    finally:
        services.stop()
