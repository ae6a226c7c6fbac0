"""Replay against the real broker: reproducible across kills, workers and the
archive; separate from a live pipeline running beside it; aged-out ranges."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from iolayer.topics_admin import create_topics
from foundry.archive import archive_topic
from foundry.replay import ReplayPlan, run_replay
from foundry.run import ServiceSet, expected_docs, output_dir, resolve_tokenizer, wait_drained
from schemas import Topics
from iolayer.publisher import RecordPublisher
from streams.raw_range import RangeAgedOut
from streams.sources.files import FileSource
from tests.foundry.pipeline_helpers import assert_exactly_once, read_outcomes, small_recipe, write_corpus

pytestmark = pytest.mark.kafka


def _publish(bootstrap: str, topic: str, corpus: Path) -> None:
    pub = RecordPublisher(bootstrap, topic)
    for doc in FileSource([corpus]):
        pub.publish(doc)
    pub.flush()


def _hashes(out: Path) -> dict[str, str]:
    files = sorted((out / "shards").glob("*.tar")) + sorted((out / "manifest").glob("*.parquet"))
    return {f"{f.parent.name}/{f.name}": hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def _kill_namespace(ns: str) -> None:
    for p in psutil.process_iter(["cmdline"]):
        if any(ns in part for part in (p.info["cmdline"] or [])):
            p.kill()


def test_replay_is_byte_identical_across_kill_workers_and_archive(kafka_bootstrap, tmp_path, unique_name):
    raw = f"{unique_name}.raw"
    create_topics(kafka_bootstrap, Topics(namespace=unique_name, partitions=3, raw_name=raw))
    corpus = tmp_path / "c.jsonl.gz"
    expected = write_corpus(corpus, 3000, dup_every=9)
    _publish(kafka_bootstrap, raw, corpus)
    recipe = small_recipe(max_tokens=3000)
    recipe_file = tmp_path / "recipe.yaml"
    recipe.save(recipe_file)

    plan_a = ReplayPlan(kafka_bootstrap, recipe, out_root=tmp_path / "a", raw_topic=raw, namespace=f"{unique_name}a")
    a = run_replay(plan_a, show_progress=False, timeout=600)
    assert a.raw_messages == len(expected) and a.sharded + a.rejected == len(expected)
    assert_exactly_once(Path(a.out_dir), expected)
    until = ",".join(f"{p}:{o}" for p, o in sorted(plan_a.end.items()))

    # B: two workers, killed (every process of it) mid-way, then resumed by running it again.
    ns_b = f"{unique_name}b"
    cmd = [sys.executable, "-m", "foundry.cli", "replay", "--bootstrap", kafka_bootstrap, "--recipe", str(recipe_file),
           "--raw-topic", raw, "--namespace", ns_b, "--workers", "2", "--out", str(tmp_path / "b"),
           "--from", "beginning", "--until", until]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    out_b = output_dir(tmp_path / "b", ns_b, plan_a.recipe)
    deadline = time.monotonic() + 300
    while len(list((out_b / "shards").glob("*.tar"))) < 5:
        assert proc.poll() is None, "replay B ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    _kill_namespace(ns_b)
    proc.wait()
    assert len(read_outcomes(out_b)[0]) < a.sharded  # really interrupted
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    # C: from the Parquet archive instead of the topic.
    assert archive_topic(kafka_bootstrap, raw, tmp_path / "archive") == len(expected)
    assert archive_topic(kafka_bootstrap, raw, tmp_path / "archive") == 0  # resumable: nothing new
    plan_c = ReplayPlan(kafka_bootstrap, recipe, source="archive", archive=tmp_path / "archive",
                        out_root=tmp_path / "c", raw_topic=raw, namespace=f"{unique_name}c")
    c = run_replay(plan_c, show_progress=False, timeout=600)

    ha = _hashes(Path(a.out_dir))
    assert len(ha) > 20
    assert _hashes(out_b) == ha
    assert _hashes(Path(c.out_dir)) == ha


def test_replay_beside_live_pipeline_keeps_outputs_separate(kafka_bootstrap, tmp_path, unique_name):
    raw = f"{unique_name}.raw"
    recipe = small_recipe()
    topics = Topics(namespace=unique_name, partitions=recipe.partitions, raw_name=raw)
    create_topics(kafka_bootstrap, topics)
    first, second = tmp_path / "1.jsonl.gz", tmp_path / "2.jsonl.gz"
    exp1 = write_corpus(first, 1500, bad=False, seed=1)
    exp2 = {k.replace("doc-", "new-"): v for k, v in write_corpus(second, 1500, bad=False, seed=2).items()}
    second.write_bytes(__import__("gzip").compress(
        __import__("gzip").decompress(second.read_bytes()).replace(b'"doc-', b'"new-')))
    _publish(kafka_bootstrap, raw, first)

    live_recipe = resolve_tokenizer(recipe, kafka_bootstrap, topics, tmp_path / "live")
    live_out = output_dir(tmp_path / "live", unique_name, live_recipe)
    live_out.mkdir(parents=True)
    live_recipe.save(live_out / "recipe.yaml")
    live = ServiceSet(kafka_bootstrap, live_out / "recipe.yaml", unique_name, tmp_path / "live",
                      tmp_path / "logs", raw)
    live.start_all()
    try:
        plan = ReplayPlan(kafka_bootstrap, live_recipe, out_root=tmp_path / "replay", raw_topic=raw)
        _publish(kafka_bootstrap, raw, second)  # new input arrives while the replay runs
        r = run_replay(plan, show_progress=False, timeout=600)
        total = expected_docs(kafka_bootstrap, topics, live_recipe)  # what live has left to do
        wait_drained(live, live_out, 0, len(exp1) + len(exp2), timeout=300)
        assert total >= 0
    finally:
        live.stop()
    assert r.raw_messages == len(exp1)
    assert_exactly_once(Path(r.out_dir), exp1)  # the replay saw exactly its range
    assert_exactly_once(live_out, {**exp1, **exp2})  # the live pipeline saw everything
    assert not set(Path(r.out_dir).rglob("*")) & set(live_out.rglob("*"))


def test_replay_of_aged_out_range_says_so(kafka_bootstrap, tmp_path, unique_name):
    raw = f"{unique_name}.raw"
    create_topics(kafka_bootstrap, Topics(namespace=unique_name, partitions=1, raw_name=raw))
    corpus = tmp_path / "c.jsonl.gz"
    write_corpus(corpus, 20, bad=False)
    _publish(kafka_bootstrap, raw, corpus)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for fut in admin.delete_records([TopicPartition(raw, 0, 10)]).values():
        fut.result()  # what retention does to old segments
    with pytest.raises(RangeAgedOut, match="aged out of retention"):
        ReplayPlan(kafka_bootstrap, small_recipe(), out_root=tmp_path, raw_topic=raw)
    ok = ReplayPlan(kafka_bootstrap, small_recipe(), start="0:10", out_root=tmp_path, raw_topic=raw)
    assert ok.total() == 10


def test_raw_retention_is_set_at_creation_and_on_an_existing_topic(kafka_bootstrap, unique_name):
    from click.testing import CliRunner

    from iolayer.topics_admin import topic_config
    from foundry.cli import main

    raw = f"{unique_name}.raw"
    args = ["topics", "create", "--bootstrap", kafka_bootstrap, "--namespace", unique_name, "--raw-topic", raw,
            "--partitions", "1"]
    def settled(key: str, want: str) -> dict:
        # A config change reaches the broker through the metadata log: give it a moment.
        deadline = time.monotonic() + 15
        while (cfg := topic_config(kafka_bootstrap, raw))[key] != want and time.monotonic() < deadline:
            time.sleep(0.3)
        return cfg

    res = CliRunner().invoke(main, args + ["--raw-retention", "7d"])
    assert res.exit_code == 0, res.output
    assert settled("retention.ms", str(7 * 86_400_000))["retention.ms"] == str(7 * 86_400_000)
    res = CliRunner().invoke(main, args + ["--raw-retention", "2GB"])
    assert res.exit_code == 0, res.output
    cfg = settled("retention.bytes", str(2 << 30))
    assert cfg["retention.bytes"] == str(2 << 30) and cfg["retention.ms"] == "-1"
    assert CliRunner().invoke(main, args + ["--raw-retention", "soon"]).exit_code != 0


def test_replay_can_start_from_the_live_dedup_filter(kafka_bootstrap, tmp_path, unique_name):
    from foundry.run import run_pipeline

    raw = f"{unique_name}.raw"
    corpus = tmp_path / "c.jsonl.gz"
    expected = write_corpus(corpus, 1200, bad=False, dup_every=1000)
    recipe = small_recipe().model_copy(update={"dedup": small_recipe().dedup.model_copy(update={"snapshot_every": 50})})
    live = run_pipeline(kafka_bootstrap, recipe, corpus=[str(corpus)], namespace=unique_name, raw_topic=raw,
                        out_root=tmp_path / "live", timeout=300, echo=lambda *_: None)
    assert live.duplicates == 1
    resolved = recipe.with_tokenizer(next((tmp_path / "live" / "tokenizers").glob("*.model")))
    fresh = run_replay(ReplayPlan(kafka_bootstrap, resolved, out_root=tmp_path / "r1", raw_topic=raw),
                       show_progress=False, timeout=600)
    warm = run_replay(ReplayPlan(kafka_bootstrap, resolved, out_root=tmp_path / "r2", raw_topic=raw,
                                 dedup_from=unique_name), show_progress=False, timeout=600)
    assert fresh.sharded == len(expected) - 1  # an empty filter: only the one real duplicate goes
    _, rows = read_outcomes(Path(warm.out_dir))
    dup = sum(r["reason"] == "duplicate" for r in rows)
    # The live filter has seen (nearly) everything; what its newest snapshots did not cover is kept.
    assert dup >= 0.8 * len(expected) and warm.sharded + warm.rejected == len(expected)
