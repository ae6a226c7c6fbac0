"""Exactly once with the full default recipe while the budgets change under it and the worker is
killed: a redelivered document must get the verdict its first delivery got (docs/exactly-once.md,
"Verdicts that do not change on redelivery")."""
from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer

from foundry.audit import audit_output
from foundry.run import ServiceSet, expected_docs, output_dir, row_count, wait_drained
from iolayer.publisher import RecordPublisher
from iolayer.topics_admin import create_topics
from schemas import BudgetUpdate, Topics
from schemas.recipe import DEFAULT_RECIPE, load_recipe
from streams.budget.agent import stamp_effective
from streams.budget.reader import budget_messages
from streams.sources.files import FileSource
from tests.conftest import shared_data
from tests.foundry.pipeline_helpers import read_outcomes

pytestmark = pytest.mark.kafka


class FlappingBudgets(threading.Thread):
    """Publishes a new budget version every ``every_s`` seconds, its keep rate for every source
    alternating between 0.1 and 0.9: a document delivered twice across a version change is
    judged under opposite rates, so a verdict that depends on the current version shows."""

    def __init__(self, bootstrap: str, namespace: str, every_s: float = 0.3):
        super().__init__(daemon=True, name="flapping-budgets")
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        self.topic, self.namespace, self.every_s = Topics(namespace).budgets, namespace, every_s
        self.stop_flag = threading.Event()
        self.version = 0
        self.state: dict = {}

    def run(self) -> None:
        while not self.stop_flag.is_set():
            self.version += 1
            rate = 0.1 if self.version % 2 else 0.9
            update = BudgetUpdate(budget_version=self.version, window_tokens=1000, budgets={"*": 100},
                                  method="test", weights={"*": rate})
            stamp_effective(update, self.state)  # as the budget agent publishes it
            for key, value in budget_messages(self.namespace, update):
                self.producer.produce(self.topic, key=key, value=value)
            self.producer.flush(10)
            self.stop_flag.wait(self.every_s)

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(10)


def _corpus(limit: int):
    data = shared_data()
    n = 0
    for doc in FileSource([data / "web_extracted_text.jsonl.gz", data / "web_cc_text.jsonl.gz"]):
        yield doc
        n += 1
        if n >= limit:
            return


def test_default_recipe_with_changing_budgets_and_killed_worker_is_exactly_once(kafka_bootstrap, tmp_path,
                                                                                 unique_name):
    recipe = load_recipe(DEFAULT_RECIPE)  # every curation operator, budget_prune last
    topics = Topics(namespace=unique_name, partitions=recipe.partitions, raw_name=f"{unique_name}.raw")
    create_topics(kafka_bootstrap, topics)
    budgets = FlappingBudgets(kafka_bootstrap, unique_name)
    budgets.start()
    pub = RecordPublisher(kafka_bootstrap, topics.raw)
    for doc in _corpus(1200):
        pub.publish(doc)
    pub.flush()
    out = output_dir(tmp_path / "out", unique_name, recipe)
    out.mkdir(parents=True)
    recipe.save(out / "recipe.yaml")
    total = expected_docs(kafka_bootstrap, topics, recipe)
    services = ServiceSet(kafka_bootstrap, out / "recipe.yaml", unique_name, tmp_path / "out", tmp_path / "logs",
                          topics.raw)
    services.start_all()
    kills = 0
    try:
        for kills in range(1, 4):  # SIGKILL the worker three times mid-run, each after it wrote something
            before = row_count(out / "manifest") + row_count(out / "ledger")
            deadline = time.monotonic() + 400
            while row_count(out / "manifest") + row_count(out / "ledger") < before + 100:
                services.check_alive()
                assert time.monotonic() < deadline, "the worker wrote nothing"
                time.sleep(0.5)
            if row_count(out / "manifest") + row_count(out / "ledger") >= total - 100:
                break
            services.stop("worker", sig=signal.SIGKILL)
            services.start("worker")
        wait_drained(services, out, 0, total, timeout=900)
        time.sleep(5)  # a redelivery's second verdict would land now
    finally:
        budgets.stop()
        services.stop()
    assert kills >= 2, "the run ended before the worker was killed twice"
    report = audit_output(out, bootstrap=kafka_bootstrap, raw_topic=topics.raw)
    assert report.ok, report.text()
    # The budgets really decided: documents kept and pruned under many versions.
    _, rows = read_outcomes(out)
    pruned = [r for r in rows if r["reason"] == "budget_pruned"]
    kept_versions = set()
    for part in sorted((out / "manifest").glob("*.parquet")):
        for s in pq.read_table(part, columns=["scores_json"]).column(0).to_pylist():
            v = json.loads(s or "{}").get("budget_version")
            if v is not None:
                kept_versions.add(v)
    # (documents of one ingest batch share a time, so a version each: on an idle machine the ingest
    # batches are few and large, and two versions in the output is what a quick run shows)
    versions = kept_versions | {float(r["budget_version"]) for r in pruned}
    assert len(pruned) > 50 and len(kept_versions) >= 2 and len(versions) >= 2, (len(pruned), versions)
    assert budgets.version > 50  # and they changed all the time the worker ran
