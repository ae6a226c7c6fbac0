"""Checkpoints: after a kill, the run resumes with exactly the batches it would have had."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from click.testing import CliRunner

from trainer.checkpoint import CheckpointStore
from foundry.cli_train import train_command
from trainer.loop import Trainer
from trainer.shard_feed import ListShardFeed, manifest_line
from trainer.value_publisher import MemoryValuePublisher

REPO = Path(__file__).resolve().parents[2]


def _run(cfg, run_dir, manifests, max_steps, final_checkpoint=True):
    batches: dict[int, torch.Tensor] = {}
    pub = MemoryValuePublisher()
    trainer = Trainer(cfg, run_dir, ListShardFeed(manifests), pub, max_steps=max_steps,
                      final_checkpoint=final_checkpoint,
                      on_batch=lambda step, batch, out: batches.__setitem__(step, batch.tokens.clone()))
    summary = trainer.run()
    return summary, batches, pub, trainer


def _weights(run_dir: Path):
    run = (run_dir / "CURRENT").read_text().strip()
    state = CheckpointStore(run_dir / "runs" / run / "checkpoints").load_latest()
    return state


def test_resume_after_kill_gives_the_uninterrupted_batches(tmp_path, make_shards, trainer_config):
    ms = make_shards(n_shards=6, docs_per_shard=12)
    cfg = trainer_config(adaptive={"min_history": 5, "threshold_sigmas": 2.0, "min_rel_rise": 0.0})
    # the uninterrupted run
    _, full, pub_full, _ = _run(cfg, tmp_path / "a", ms, max_steps=30)
    # a run killed at step 25: its last checkpoint is the one of step 20, nothing after it is saved
    summary, first, _, _ = _run(cfg, tmp_path / "b", ms, max_steps=25, final_checkpoint=False)
    assert summary.final_step == 25
    assert CheckpointStore(next((tmp_path / "b" / "runs").iterdir()) / "checkpoints").steps()[-1] == 20
    # the restart resumes from step 20
    summary, resumed, pub_resumed, _ = _run(cfg, tmp_path / "b", ms, max_steps=30)
    assert min(resumed) == 20 and max(resumed) == 29
    for step in range(20):
        assert torch.equal(first[step], full[step])
    for step in range(20, 30):
        assert torch.equal(resumed[step], full[step]), f"batch of step {step} differs after resume"
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a["step"] == b["step"] == 30
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert a["stream"] == b["stream"] and a["schedule"] == b["schedule"]
    # the value scores of the steps after the checkpoint are the same as well
    late = lambda recs: sorted((r.doc_id, r.trainer_step, round(r.value, 9)) for r in recs  # noqa: E731
                               if r.trainer_step >= 20 and not r.doc_id.startswith("aggregate:"))
    assert late(pub_full.records) and late(pub_full.records) == late(pub_resumed.records)


def test_data_position_in_checkpoint(tmp_path, make_shards, trainer_config):
    ms = make_shards(n_shards=4)
    _run(trainer_config(), tmp_path / "r", ms, max_steps=10)
    state = _weights(tmp_path / "r")
    assert state["next_offset"] == 4  # every announcement read
    assert [m["shard"] for _, m in state["manifests"]["heldout"]] == [ms[0].shard]
    assert state["consumed_through_offset"] is not None
    assert {"model", "optimizer", "schedule", "rng", "stream", "ledger"} <= set(state)


def test_sigkill_of_the_cli_then_restart(tmp_path, make_shards):
    """The real thing: ``foundry train`` killed with SIGKILL mid-run, restarted, same batches (by digest).

    The killed run is a child process; the reference run and the restart run in this process."""
    ms = make_shards(n_shards=6, docs_per_shard=12)
    feed = tmp_path / "manifests.jsonl"
    feed.write_text("".join(manifest_line(m) for m in ms))
    sets = ["model.n_layer=1", "model.n_embd=32", "model.block_size=32", "data.micro_batch_rows=4",
            "data.replay_shards=3", "checkpoint.every=10", "log_every=1", "export.every=0", "torch_threads=1"]

    def args(run_dir, steps):
        out = ["--config", "tiny", "--run-dir", str(run_dir), "--manifests", str(feed),
               "--values-out", str(run_dir) + ".values.jsonl", "--max-steps", str(steps), "--quiet"]
        for s in sets:
            out += ["--set", s]
        return out

    def digests(run_dir):
        out = {}
        for path in (run_dir / "runs").glob("*/events.jsonl"):
            for line in path.read_text().splitlines():
                ev = json.loads(line)
                if ev["event"] == "train":
                    out.setdefault(ev["step"], set()).add(ev["digest"])
        return out

    runner = CliRunner()
    res = runner.invoke(train_command, args(tmp_path / "full", 30))
    assert res.exit_code == 0, res.output
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "foundry.cli", "train", *args(tmp_path / "killed", 10_000)],
                            env=env, cwd=REPO)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and max(digests(tmp_path / "killed") or {0: 0}) < 14:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = max(digests(tmp_path / "killed"))
    assert 14 <= killed_at < 10_000
    res = runner.invoke(train_command, args(tmp_path / "killed", 30))
    assert res.exit_code == 0, res.output
    full, killed = digests(tmp_path / "full"), digests(tmp_path / "killed")
    assert set(range(1, 31)) <= set(full)
    for step in range(1, 31):  # steps after the last checkpoint were trained twice: the same batch both times
        assert killed[step] == full[step], step
