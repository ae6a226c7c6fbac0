"""A bare ``{op: budget_prune}`` inside a real worker (``foundry.run.run_pipeline``): it reads the
BudgetUpdate of the worker's own namespace from the budgets topic, prunes the source whose keep
rate is 0 to the ledger (reason ``budget_pruned`` with the budget version), shards the other, and
every input document is accounted for exactly once."""
from __future__ import annotations

import gzip
import json
import random
import tarfile
from pathlib import Path

import pytest
import yaml

from schemas.recipe import Recipe
from schemas import BudgetUpdate, Topics
from streams.budget.features import UNKNOWN
from tests.foundry.pipeline_helpers import assert_exactly_once, read_outcomes

pytestmark = pytest.mark.kafka

N_PER_SOURCE = 150
VERSION = 7


def _corpus(path: Path, source: str, n: int, rng: random.Random) -> dict[str, str | None]:
    """``n`` short distinct documents; the file name is the source (FileSource's rule)."""
    syllables = "ka lo mi nu pe ra si tu ve wo xi ya zo ba ce di fo gu hi ja".split()
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for i in range(n):
            words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3)))
                     for _ in range(rng.randint(15, 50))]
            fh.write(json.dumps({"id": f"{source}-{i}", "text": " ".join(words) + f" {source} {i}"}) + "\n")
    return {f"{source}-{i}": None for i in range(n)}


def _publish_budget(bootstrap: str, topics: Topics, namespace: str) -> None:
    from confluent_kafka import Producer

    update = BudgetUpdate(budget_version=VERSION, window_tokens=100_000,
                          budgets={"good": 100_000, "spam": 0, UNKNOWN: 100_000}, method="test",
                          weights={"good": 1.0, "spam": 0.0, UNKNOWN: 1.0})
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topics.budgets, key=namespace.encode(), value=update.encode())  # key: the namespace
    assert producer.flush(30) == 0


def _shard_metas(out: Path) -> list[dict]:
    metas = []
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    metas.append(json.loads(tf.extractfile(m).read()))
    return metas


def test_bare_budget_prune_in_a_worker_prunes_by_the_namespace_budgets(kafka_bootstrap, tmp_path, unique_name,
                                                                        monkeypatch):
    from iolayer.topics_admin import create_topics
    from foundry.run import run_pipeline

    # the worker's own broker and namespace must be what the stage uses, not the environment
    monkeypatch.delenv("FOUNDRY_BOOTSTRAP", raising=False)
    monkeypatch.delenv("FOUNDRY_NAMESPACE", raising=False)
    recipe = Recipe.model_validate({
        "name": "budget-test", "partitions": 2,
        "tokenizer": {"vocab_size": 300, "train_mb": 0.2},
        "shards": {"max_tokens": 5_000, "timeout_s": 1.0},
        "batch": {"size": 64, "within_s": 0.2},
        "curation": [{"op": "budget_prune"}],
    })
    raw_topic = f"{unique_name}.raw"
    topics = Topics(namespace=unique_name, partitions=recipe.partitions, raw_name=raw_topic)
    create_topics(kafka_bootstrap, topics)
    _publish_budget(kafka_bootstrap, topics, unique_name)

    rng = random.Random(5)
    expected = _corpus(tmp_path / "good.jsonl.gz", "good", N_PER_SOURCE, rng)
    spam = _corpus(tmp_path / "spam.jsonl.gz", "spam", N_PER_SOURCE, rng)
    expected.update({k: "budget_pruned" for k in spam})
    summary = run_pipeline(kafka_bootstrap, recipe, corpus=[str(tmp_path / "good.jsonl.gz"),
                                                            str(tmp_path / "spam.jsonl.gz")],
                           namespace=unique_name, raw_topic=raw_topic, out_root=tmp_path / "out", timeout=180,
                           echo=lambda *_: None)
    out = Path(summary.out_dir)

    assert_exactly_once(out, expected)  # each document once, in a shard or in the ledger, reasons as expected
    ids, rows = read_outcomes(out)
    assert sorted(ids) == sorted(k for k in expected if k.startswith("good-"))
    assert len(rows) == N_PER_SOURCE
    for r in rows:
        assert (r["reason"], r["stage"], r["source"], r["budget_version"]) == (
            "budget_pruned", "budget_prune", "spam", VERSION)
        assert "why=over_budget" in r["detail"]
    metas = _shard_metas(out)
    assert len(metas) == N_PER_SOURCE
    assert all(m["source"] == "good" and m["scores"]["budget_version"] == VERSION for m in metas)
    # the worker filled in its broker and namespace on a copy: the recipe as saved is as written
    saved = Recipe.model_validate(yaml.safe_load((out / "recipe.yaml").read_text()))
    assert saved.curation == [{"op": "budget_prune"}] and saved.version == summary.recipe_version
