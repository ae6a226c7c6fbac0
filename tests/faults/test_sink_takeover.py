"""Two shard writers share the tokenized topic; one is stopped (SIGSTOP) past its session
timeout while it holds buffered documents, the other takes its partitions over, then the first
is resumed. A sink that lost its group membership must not write a part over the new owner's
(fencing): every document still ends in exactly one shard or one ledger row."""
from __future__ import annotations

import os
import signal
import time

import pytest

from foundry.run import ServiceSet, expected_docs, output_dir, wait_drained
from iolayer.publisher import RecordPublisher
from iolayer.topics_admin import create_topics
from schemas import Topics
from schemas.recipe import resolve_file_ref
from streams.sources.files import FileSource
from tests.faults.factory_driver import full_suite_only
from tests.foundry.pipeline_helpers import assert_exactly_once, read_outcomes, small_recipe, write_corpus

pytestmark = pytest.mark.kafka

SESSION_TIMEOUT_S = 10  # consumers/partitioned_sink.py session.timeout.ms


@full_suite_only
def test_a_paused_shard_writer_does_not_overwrite_the_new_owners_parts(cluster3, tmp_path, unique_name):
    bootstrap = cluster3.bootstrap
    corpus = tmp_path / "corpus.jsonl.gz"
    expected = write_corpus(corpus, 6000, dup_every=9, bad=False)
    recipe = small_recipe(max_tokens=3000, timeout_s=30.0)  # parts close by size, so a pause holds a buffer
    recipe = recipe.with_tokenizer(resolve_file_ref("pkg:models/tokenizer/foundry-sp32k-v1.model", "."))
    topics = Topics(namespace=unique_name, partitions=recipe.partitions, raw_name=f"{unique_name}.raw")
    create_topics(bootstrap, topics)
    out = output_dir(tmp_path / "out", unique_name, recipe)
    out.mkdir(parents=True)
    recipe.save(out / "recipe.yaml")
    services = ServiceSet(bootstrap, out / "recipe.yaml", unique_name, tmp_path / "out", tmp_path / "logs",
                          topics.raw)
    services.start("shard-writer", suffix="-a")
    services.start("shard-writer", suffix="-b")
    services.start("ledger")
    pub = RecordPublisher(bootstrap, topics.raw)
    for doc in FileSource([corpus]):
        pub.publish(doc)
    pub.flush()
    total = expected_docs(bootstrap, topics, recipe)
    services.start("worker")
    try:
        deadline = time.monotonic() + 480  # worker start-up on a loaded host
        while len(read_outcomes(out)[0]) < 300:
            services.check_alive()
            assert time.monotonic() < deadline, "no shards appeared"
            time.sleep(0.2)
        a = services.procs["shard-writer-a"]
        os.killpg(a.pid, signal.SIGSTOP)
        try:
            time.sleep(SESSION_TIMEOUT_S * 2.5)  # b owns every partition now and writes on
        finally:
            os.killpg(a.pid, signal.SIGCONT)
        time.sleep(5)
        a_exit = a.poll()  # a sink that finds itself fenced may exit; a supervisor restarts it
        if a_exit is not None:
            services.procs.pop("shard-writer-a")
        wait_drained(services, out, 0, total, timeout=300)
        time.sleep(5)  # a part written late by a would land now
    finally:
        services.stop()
    print(f"paused shard writer after resuming: {'exited ' + str(a_exit) if a_exit is not None else 'running'}")
    assert_exactly_once(out, expected)
