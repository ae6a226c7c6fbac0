"""Near-duplicate recall through the real broker does not depend on the partition count.

The corpus is every document of the known near-duplicate pairs (both sides, one
corpus). The pipeline's exact and near-duplicate verdicts must be those of the
in-process stages over the order the dedup agent judged (the sequenced topic),
document for document, and its recall must be the in-process operator's on the
file order, with 1, 4 and 16 partitions. Before the sequenced topic each
partition's index saw only its own documents: 76 of 205 near-duplicates were
found with 4 partitions. A replay with near_dedup gives the same bytes with one
worker and with two.
"""
from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from foundry.replay import ReplayPlan, run_replay
from foundry.run import run_pipeline
from iolayer.publisher import RecordPublisher
from iolayer.ranges import range_consumer, read_range, watermarks
from iolayer.topics_admin import create_topics
from schemas import CuratedDocument, Rejection, Topics
from schemas.recipe import Recipe, resolve_file_ref
from streams.partition_state import PartitionState
from streams.sources.files import FileSource
from streams.stages.dedup import BloomDeduper
from streams.stages.near_dedup import NearDedup
from streams.stages.validate import Validator
from tests.conftest import shared_data
from tests.foundry.pipeline_helpers import read_outcomes

pytestmark = pytest.mark.kafka

NEAR = {"op": "near_dedup", "threshold": 0.5, "num_perm": 128}


def _recipe(partitions: int) -> Recipe:
    # near_dedup alone (and the shipped tokenizer): the other operators would only slow the test down
    recipe = Recipe.model_validate({
        "name": "near-dup-recall", "partitions": partitions, "curation": [NEAR],
        "shards": {"max_tokens": 200_000, "timeout_s": 1.0},
        "batch": {"size": 128, "within_s": 0.2},
    })
    return recipe.with_tokenizer(resolve_file_ref("pkg:models/tokenizer/foundry-sp32k-v1.model", "."))


@pytest.fixture(scope="module")
def pair_corpus(tmp_path_factory) -> tuple[Path, list[tuple[str, str]]]:
    """Both sides of every known pair, pair by pair, each document once; and the pairs' ids."""
    path = tmp_path_factory.mktemp("near-dups") / "pairs.jsonl.gz"
    seen: set[str] = set()
    pairs = []
    with gzip.open(shared_data() / "near_dups.jsonl.gz", "rt") as src, gzip.open(path, "wt") as out:
        for line in src:
            r = json.loads(line)
            pairs.append((r["a_id"], r["b_id"]))
            for side in "ab":
                if r[f"{side}_id"] not in seen:
                    seen.add(r[f"{side}_id"])
                    out.write(json.dumps({"id": r[f"{side}_id"], "text": r[f"{side}_text"]}, ensure_ascii=False) + "\n")
    return path, pairs


def _judge(docs: list[CuratedDocument]) -> dict[str, str]:
    """id -> reason for every document the in-process stages reject, in the given order."""
    state = PartitionState([BloomDeduper(1_000_000, 0.001), NearDedup(**{k: v for k, v in NEAR.items() if k != "op"})])
    return {o.id: o.reason for o in state.process(docs) if isinstance(o, Rejection)}


def _recall(rejected: dict[str, str], pairs: list[tuple[str, str]]) -> float:
    """Share of the known pairs with one side rejected as an exact or near duplicate."""
    return sum(1 for a, b in pairs if a in rejected or b in rejected) / len(pairs)


def _hashes(out: Path) -> dict[str, str]:
    files = sorted((out / "shards").glob("*.tar")) + sorted((out / "manifest").glob("*.parquet"))
    return {f"{f.parent.name}/{f.name}": hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def _sequenced_order(bootstrap: str, topics: Topics) -> list[CuratedDocument]:
    (_, high), = watermarks(bootstrap, topics.sequenced).values()
    c = range_consumer(bootstrap)
    try:
        return [CuratedDocument.decode(m.value()) for m in read_range(c, topics.sequenced, 0, 0, high)]
    finally:
        c.close()


@pytest.mark.parametrize("partitions", [1, 4, 16])
def test_near_duplicates_are_found_across_partitions(kafka_bootstrap, tmp_path, unique_name, pair_corpus,
                                                     partitions):
    corpus, pairs = pair_corpus
    recipe = _recipe(partitions)
    in_file_order = _judge([d for d in map(Validator("r"), FileSource([corpus])) if isinstance(d, CuratedDocument)])
    assert Counter(in_file_order.values())["near_duplicate"] > 150  # the corpus really is full of them

    summary = run_pipeline(kafka_bootstrap, recipe, corpus=[str(corpus)], namespace=unique_name,
                           raw_topic=f"{unique_name}.raw", out_root=tmp_path / "out", timeout=400, echo=lambda *_: None)
    _, rows = read_outcomes(Path(summary.out_dir))
    through_kafka = {r["id"]: r["reason"] for r in rows if r["reason"] in ("duplicate", "near_duplicate")}
    assert len(through_kafka) == sum(1 for r in rows if r["reason"] in ("duplicate", "near_duplicate"))

    # The same verdicts as the stages in-process over the order the dedup agent saw.
    topics = Topics(namespace=unique_name, partitions=partitions, raw_name=f"{unique_name}.raw")
    order = _sequenced_order(kafka_bootstrap, topics)
    assert len(order) == len({d.id for d in order}) == summary.docs_in
    assert through_kafka == _judge(order)
    # ... and the recall of the operator run on the file, whatever the order the raw partitions interleaved in.
    near = Counter(through_kafka.values())["near_duplicate"]
    expected = Counter(in_file_order.values())["near_duplicate"]
    assert abs(near - expected) <= 0.02 * expected, (near, expected)
    assert _recall(through_kafka, pairs) >= _recall(in_file_order, pairs) - 0.01
    for r in rows:
        if r["reason"] == "near_duplicate":  # names a kept document
            assert r["duplicate_of"] and r["duplicate_of"] not in through_kafka


def test_a_replay_with_near_dedup_is_byte_identical_whatever_the_worker_count(kafka_bootstrap, tmp_path,
                                                                              unique_name, pair_corpus):
    corpus, _ = pair_corpus
    raw = f"{unique_name}.raw"
    create_topics(kafka_bootstrap, Topics(namespace=unique_name, partitions=4, raw_name=raw))
    pub = RecordPublisher(kafka_bootstrap, raw)
    for doc in FileSource([corpus]):
        pub.publish(doc)
    pub.flush()
    recipe = _recipe(4).model_copy(update={"shards": _recipe(4).shards.model_copy(update={"max_tokens": 20_000})})
    outs = []
    for workers in (1, 2):
        plan = ReplayPlan(kafka_bootstrap, recipe, out_root=tmp_path / f"w{workers}", raw_topic=raw,
                          namespace=f"{unique_name}w{workers}")
        outs.append(Path(run_replay(plan, workers=workers, show_progress=False, timeout=400).out_dir))
    one, two = (_hashes(o) for o in outs)
    assert len(one) > 4 and one == two  # every tar and manifest part, byte for byte
    # The feeder's canonical order (raw partition, then offset) is the order duplicates were judged in.
    order = _sequenced_order(kafka_bootstrap, Topics(namespace=f"{unique_name}w1", raw_name=raw))
    _, rows = read_outcomes(outs[0])
    assert {r["id"]: r["reason"] for r in rows if r["reason"] in ("duplicate", "near_duplicate")} == _judge(order)
