"""Runs: a new tokenizer version starts a new run; an idle feed ends a run with --until-idle."""
from __future__ import annotations

import json

from trainer.checkpoint import CheckpointStore
from trainer.loop import Trainer
from trainer.shard_feed import ListShardFeed
from trainer.value_publisher import MemoryValuePublisher


def test_tokenizer_version_change_starts_a_new_run(tmp_path, make_shards, trainer_config):
    old = make_shards(n_shards=3, sub="v1", tokenizer_version="tok-v1", vocab_size=64)
    new = make_shards(n_shards=3, sub="v2", tokenizer_version="tok-v2", vocab_size=80, seed=5)
    late_old = make_shards(n_shards=1, sub="v1late", tokenizer_version="tok-v1", vocab_size=64, seed=9)
    feed = ListShardFeed(old + new + late_old)
    pub = MemoryValuePublisher()
    summary = Trainer(trainer_config(), tmp_path / "run", feed, pub, until_idle=0.3).run()
    assert summary.stop_reason == "idle"
    assert summary.runs == ["r000000000-tok-v1-v64", "r000000003-tok-v2-v80"]
    assert (tmp_path / "run" / "CURRENT").read_text().strip() == "r000000003-tok-v2-v80"
    runs = tmp_path / "run" / "runs"
    v1 = CheckpointStore(runs / "r000000000-tok-v1-v64" / "checkpoints").load_latest()
    v2 = CheckpointStore(runs / "r000000003-tok-v2-v80" / "checkpoints").load_latest()
    assert v1["model"]["tok_emb.weight"].shape[0] == 65 and v2["model"]["tok_emb.weight"].shape[0] == 81
    # the old run trained all of its shards before the switch, and none of the new ones
    assert v1["next_offset"] == 3 and v1["stream"]["next_new"] == 2
    assert {m["tokenizer_version"] for _, m in v2["manifests"]["train"].values()} <= {"tok-v2"}
    assert v2["next_offset"] == 7  # the late shard of the old version was read and skipped
    events = [json.loads(x) for x in (tmp_path / "run" / "trainer.jsonl").read_text().splitlines()]
    assert any(e["event"] == "tokenizer_switch" for e in events)
    assert any(e["event"] == "manifest_skipped" and e["offset"] == 6 for e in events)
    versions = {r.model_version.split("-s")[0] for r in pub.records}
    assert versions == {"r000000000-tok-v1-v64", "r000000003-tok-v2-v80"}


def test_restart_continues_the_current_run(tmp_path, make_shards, trainer_config):
    ms = make_shards(n_shards=4)
    cfg = trainer_config()
    first = Trainer(cfg, tmp_path / "run", ListShardFeed(ms), MemoryValuePublisher(), max_steps=12).run()
    second = Trainer(cfg, tmp_path / "run", ListShardFeed(ms), MemoryValuePublisher(), max_steps=20).run()
    assert first.final_step == 12 and second.final_step == 20 and second.steps == 8
    assert first.runs == second.runs


def test_until_idle_without_any_shard(tmp_path, trainer_config):
    summary = Trainer(trainer_config(), tmp_path / "run", ListShardFeed([]), MemoryValuePublisher(),
                      until_idle=0.2).run()
    assert summary.stop_reason == "idle" and summary.runs == [] and summary.steps == 0


def test_a_shard_announced_twice_is_trained_once(tmp_path, make_shards, trainer_config):
    ms = make_shards(n_shards=4)
    feed = ListShardFeed([ms[0], ms[1], ms[2], ms[1], ms[3]])  # the writer re-announced shard 1 after a crash
    pub = MemoryValuePublisher()
    Trainer(trainer_config(data={"new_fraction": 1.0}), tmp_path / "run", feed, pub, until_idle=0.2).run()
    run = next((tmp_path / "run" / "runs").iterdir())
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    roles = [(e["offset"], e["role"]) for e in events if e["event"] == "manifest"]
    assert roles == [(0, "heldout"), (1, "train"), (2, "train"), (3, "duplicate"), (4, "train")]
    rounds = CheckpointStore(run / "checkpoints").load_latest()["stream"]
    assert rounds["next_new"] == 3
