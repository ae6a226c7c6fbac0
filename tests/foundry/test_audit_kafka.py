"""foundry audit against the real broker, and raw refs that name their topic."""
from __future__ import annotations

import gzip
import json
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from iolayer.topics_admin import delete_topics
from foundry.audit import audit_output
from foundry.cli import main
from foundry.run import output_dir, run_pipeline
from streams.stages.tokenizer_training import train_tokenizer
from iolayer.ranges import watermarks
from tests.foundry.pipeline_helpers import small_recipe, write_corpus

pytestmark = pytest.mark.kafka


def _texts(corpus: Path):
    with gzip.open(corpus, "rt") as fh:
        for line in fh:
            yield json.loads(line)["text"]


def _gone(bootstrap: str, topic: str) -> bool:
    try:
        watermarks(bootstrap, topic)
        return False
    except Exception:  # noqa: BLE001 - unknown topic
        return True


def test_runs_from_another_and_a_recreated_raw_topic_are_all_kept_and_audited(kafka_bootstrap, tmp_path,
                                                                              unique_name):
    """Offsets of another raw topic, or of a raw topic deleted and created again, start at 0
    again: they must not be taken for redeliveries of what the namespace already processed."""
    corpora = []
    for seed in (1, 2, 3):
        c = tmp_path / f"c{seed}.jsonl.gz"
        write_corpus(c, 300, dup_every=10, bad=False, seed=seed)
        corpora.append(c)
    # One tokenizer for all three runs, so they share a recipe version, output folder and groups.
    recipe = small_recipe()
    model = train_tokenizer(_texts(corpora[0]), tmp_path / "tok", vocab_size=recipe.tokenizer.vocab_size,
                            model_type=recipe.tokenizer.model_type, max_mb=recipe.tokenizer.train_mb)
    recipe = recipe.with_tokenizer(model)
    raw_a, raw_b = f"{unique_name}.raw", f"{unique_name}.raw2"
    out = output_dir(tmp_path / "out", unique_name, recipe)

    def run(corpus: Path, raw: str):
        return run_pipeline(kafka_bootstrap, recipe, corpus=[str(corpus)], namespace=unique_name, raw_topic=raw,
                            out_root=tmp_path / "out", timeout=240)

    s1 = run(corpora[0], raw_a)
    assert s1.docs_in == 300
    rep = audit_output(out, bootstrap=kafka_bootstrap, raw_topic=raw_a)
    assert rep.ok and rep.raw_checked == 300, rep.text()
    assert rep.manifest_rows + rep.ledger_rows == 300 and rep.unreadable_refs == 0

    # The audit finds a lost shard, by source, and the command exits 1.
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    lost = sorted((broken / "manifest").glob("*.parquet"))[0]
    n_lost = len(__import__("pyarrow.parquet", fromlist=["x"]).read_table(lost))
    lost.unlink()
    rep = audit_output(broken, bootstrap=kafka_bootstrap, raw_topic=raw_a)
    assert rep.counts["missing"] == n_lost and rep.by_source["missing"] == {"c1": n_lost}, rep.text()
    res = CliRunner().invoke(main, ["audit", str(broken), "--bootstrap", kafka_bootstrap, "--raw-topic", raw_a])
    assert res.exit_code == 1 and f"missing                {n_lost}" in res.output, res.output

    # Another raw topic into the same namespace: its offsets 0..299 are new documents.
    s2 = run(corpora[1], raw_b)
    assert s2.docs_in == 300 and s2.docs_written > 0
    rep = audit_output(out, bootstrap=kafka_bootstrap, raw_topic=raw_b)
    assert rep.ok and rep.raw_checked == 300 and rep.outside_range == 300, rep.text()

    # The first raw topic deleted and created again: offsets restart, documents are new.
    delete_topics(kafka_bootstrap, [raw_a])
    deadline = time.monotonic() + 60
    while not _gone(kafka_bootstrap, raw_a):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    s3 = run(corpora[2], raw_a)
    assert s3.docs_in == 300
    rep = audit_output(out, bootstrap=kafka_bootstrap, raw_topic=raw_a)
    # The first topic's rows name an incarnation that is gone: outside, not "sharded twice".
    assert rep.ok and rep.raw_checked == 300 and rep.outside_range == 600, rep.text()


def test_damaged_corpus_files_end_in_the_ledger_not_in_an_exception(kafka_bootstrap, tmp_path, unique_name):
    good = tmp_path / "good.jsonl.gz"
    write_corpus(good, 200, dup_every=10, bad=True)
    nested = tmp_path / "nest.jsonl"
    nested.write_bytes(b'{"id": "n1", "text": "fine words here"}\n{"id": "deep", "text": '
                       + b"[" * 100_000 + b"]" * 100_000 + b"}\n")
    cut = tmp_path / "cut.jsonl.gz"
    whole = gzip.compress(b"".join(json.dumps({"id": f"cut-{i}", "text": f"cut text {i} " * 5}).encode() + b"\n"
                                   for i in range(400)))
    cut.write_bytes(whole[: len(whole) // 2])
    summary = run_pipeline(kafka_bootstrap, small_recipe(), corpus=[str(good), str(nested), str(cut)],
                           namespace=unique_name, raw_topic=f"{unique_name}.raw", out_root=tmp_path / "out",
                           timeout=240)
    rep = audit_output(Path(summary.out_dir), bootstrap=kafka_bootstrap, raw_topic=f"{unique_name}.raw")
    assert rep.ok and rep.raw_checked == summary.docs_in, rep.text()
    assert summary.rejections_by_reason.get("corrupt_record") == 1
    assert summary.rejections_by_reason.get("malformed", 0) >= 3  # two of BAD_LINES and the nested line
