"""The whole pipeline against the real broker: accounting, bad input, restarts."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from iolayer.topics_admin import create_topics
from foundry.run import ServiceSet, expected_docs, output_dir, resolve_tokenizer, run_pipeline, wait_drained
from schemas import Topics
from iolayer.publisher import RecordPublisher
from streams.sources.files import FileSource
from tests.foundry.pipeline_helpers import assert_exactly_once, read_outcomes, small_recipe, write_corpus

pytestmark = pytest.mark.kafka


def test_every_document_ends_in_one_shard_or_the_ledger(kafka_bootstrap, tmp_path, unique_name):
    corpus = tmp_path / "corpus.jsonl.gz"
    expected = write_corpus(corpus, 1500, dup_every=10)
    summary = run_pipeline(kafka_bootstrap, small_recipe(), corpus=[str(corpus)], namespace=unique_name,
                           raw_topic=f"{unique_name}.raw", out_root=tmp_path / "out", timeout=300)
    out = Path(summary.out_dir)
    assert_exactly_once(out, expected)
    ids, rows = read_outcomes(out)
    dups = [r for r in rows if r["reason"] == "duplicate"]
    # Every 10th good document repeats an earlier text; random picks may repeat a repeat.
    assert len(dups) == 1500 // 10 - 1 + 0  # i=0 has nothing to repeat
    assert all(r["duplicate_of"] and r["duplicate_of"].startswith("doc-") for r in dups)
    assert summary.docs_in == len(expected)
    assert summary.docs_written == len(ids) and summary.tokens_written > 0
    assert summary.duplicates == len(dups)
    # The workers' outcomes were seen on their topics: a first batch, then the rest.
    assert 0 < summary.startup_s <= summary.curated_s <= summary.seconds
    assert 0 < summary.startup_docs <= summary.docs_in
    assert summary.steady_mb_per_s > 0 and summary.steady_cpu_s_per_mb["worker"] > 0
    # Shards carry the recipe version and the manifest agrees with the tars.
    man = pq.read_table(sorted((out / "manifest").glob("*.parquet"))[0]).to_pylist()
    assert {m["recipe_version"] for m in man} == {summary.recipe_version}


def test_restart_of_worker_and_shard_writer_mid_run_is_exactly_once(kafka_bootstrap, tmp_path, unique_name):
    corpus = tmp_path / "corpus.jsonl.gz"
    expected = write_corpus(corpus, 4000, dup_every=7)
    recipe = small_recipe(max_tokens=4000)
    topics = Topics(namespace=unique_name, partitions=recipe.partitions, raw_name=f"{unique_name}.raw")
    create_topics(kafka_bootstrap, topics)
    pub = RecordPublisher(kafka_bootstrap, topics.raw)
    for doc in FileSource([corpus]):
        pub.publish(doc)
    pub.flush()
    recipe = resolve_tokenizer(recipe, kafka_bootstrap, topics, tmp_path / "out")
    out = output_dir(tmp_path / "out", unique_name, recipe)
    out.mkdir(parents=True)
    recipe.save(out / "recipe.yaml")
    total = expected_docs(kafka_bootstrap, topics, recipe)
    assert total == len(expected)
    # This worker compresses with zstd (the other test's, with the default, does not): the sinks read both.
    services = ServiceSet(kafka_bootstrap, out / "recipe.yaml", unique_name, tmp_path / "out", tmp_path / "logs",
                          topics.raw, extra={"worker": ["--compression", "zstd"]})
    services.start_all()
    try:
        deadline = time.monotonic() + 180
        while len(list((out / "manifest").glob("*.parquet"))) < 3:  # mid-run: some shards durable
            services.check_alive()
            assert time.monotonic() < deadline, "no shards appeared"
            time.sleep(0.2)
        services.stop("worker", sig=signal.SIGKILL)
        services.stop("shard-writer", sig=signal.SIGKILL)
        done_at_kill = len(read_outcomes(out)[0])
        assert done_at_kill < 4000  # really mid-run
        services.start("worker")
        services.start("shard-writer")
        wait_drained(services, out, 0, total, timeout=300)
        time.sleep(3)  # anything written twice would land now
    finally:
        services.stop()
    assert_exactly_once(out, expected)
