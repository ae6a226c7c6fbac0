"""The adaptive schedule: warmup and decay, spike detection and each response."""
from __future__ import annotations

import json
import math

import numpy as np
import torch

from trainer.config import AdaptiveConfig, OptimConfig
from trainer.loop import Trainer
from trainer.schedule import AdaptiveSchedule, SpikeDetector, scheduled_lr
from trainer.shard_feed import ListShardFeed
from trainer.value_publisher import MemoryValuePublisher


def _noisy_losses(n, seed=0):
    rng = np.random.default_rng(seed)
    return [3.0 * math.exp(-i / 300) + 2.0 + rng.normal(0, 0.02) for i in range(n)]


def test_warmup_then_cosine_decay():
    cfg = OptimConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10, decay="cosine", decay_steps=110)
    lrs = [scheduled_lr(s, cfg) for s in range(200)]
    assert lrs[0] == 1e-4 and abs(lrs[9] - 1e-3) < 1e-12
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert abs(lrs[60] - 5.5e-4) < 1e-9 and lrs[150] == 1e-4
    inv = OptimConfig(lr=1e-3, min_lr=1e-5, warmup_steps=100, decay="inv_sqrt")
    assert abs(scheduled_lr(400, inv) - 5e-4) < 1e-12


def test_detector_flags_an_injected_spike_and_nothing_else():
    det = SpikeDetector(AdaptiveConfig(min_history=20))
    flagged = []
    losses = _noisy_losses(400)
    losses[250] *= 1.6  # the injected spike
    for step, loss in enumerate(losses):
        spike, _ = det.check(loss)
        det.update(loss, spike)
        if spike:
            flagged.append(step)
    assert flagged == [250]
    assert det.mean < 3.0  # the spike did not drag the running mean up
    assert not det.check(float("nan"))[0] is False


def test_responses_skip_backoff_grow_check_weights_and_recover():
    cfg = AdaptiveConfig(min_history=20, lr_backoff=0.5, lr_recover_steps=20, grow_batch_after=2, grow_window=50,
                         rollback_after=3, plateau_window=0)
    sched = AdaptiveSchedule(OptimConfig(warmup_steps=0, decay="constant", lr=1e-3), cfg)
    losses = _noisy_losses(300)
    events = []
    for step, loss in enumerate(losses):
        if step in (100, 120, 121, 122):
            loss *= 2.0
        d = sched.observe(step, loss)
        events += [(step, e["event"]) for e in d.events]
        if step == 100:
            assert d.skip and not d.check_weights and sched.lr_mult == 0.5
        if step == 101:
            assert not d.skip and 0.5 < sched.lr_mult < 0.55
        assert d.check_weights == (step == 122)  # three in a row: are the weights bad?
    kinds = [k for _, k in events]
    assert kinds.count("spike") == 4 and kinds.count("skip_batch") == 4
    assert (120, "batch_grow") in events and sched.batch_mult == 2  # two episodes (100; 120-122), one growth
    assert sched.lr_mult == 1.0  # recovered long before step 300
    assert sched.healthy(299) and not sched.healthy(130)


def test_fixed_schedule_counts_spikes_but_does_not_respond():
    sched = AdaptiveSchedule(OptimConfig(warmup_steps=0, decay="constant"), AdaptiveConfig(enabled=False,
                                                                                            min_history=20))
    for step, loss in enumerate(_noisy_losses(200)):
        d = sched.observe(step, loss * (3.0 if step == 150 else 1.0))
        assert not d.skip and not d.check_weights
    assert sched.n_spikes == 1 and sched.lr_mult == 1.0 and sched.batch_mult == 1


def test_a_lasting_shift_of_the_loss_is_rebaselined_not_skipped_forever():
    sched = AdaptiveSchedule(OptimConfig(warmup_steps=0, decay="constant"),
                             AdaptiveConfig(min_history=20, rebaseline_after=10, plateau_window=0))
    rng = np.random.default_rng(2)
    skipped = []
    for step in range(200):
        loss = 2.0 + rng.normal(0, 0.01) + (1.0 if step >= 100 else 0.0)  # a new source: +1 nat from step 100
        if sched.observe(step, loss).skip:
            skipped.append(step)
    assert skipped[0] == 100 and len(skipped) <= 12 and max(skipped) < 115


def test_plateau_raises_the_batch():
    sched = AdaptiveSchedule(OptimConfig(warmup_steps=0, decay="constant"),
                             AdaptiveConfig(min_history=10, plateau_window=50, plateau_rel=0.01))
    rng = np.random.default_rng(1)
    for step in range(120):
        sched.observe(step, 2.0 + rng.normal(0, 0.01))
    assert sched.batch_mult == 4  # no progress at 50 and at 100 steps


def test_trainer_logs_and_skips_an_injected_loss_spike(tmp_path, make_shards, trainer_config):
    """In the loop: a garbage shard in the middle of clean text makes spikes that are logged and skipped."""
    ms = make_shards(n_shards=20, docs_per_shard=12, garbage_every=16)  # shard 16 is all garbage
    cfg = trainer_config(adaptive={"min_history": 15}, optim={"lr": 3e-3})
    trainer = Trainer(cfg, tmp_path / "run", ListShardFeed(ms), MemoryValuePublisher(), until_idle=0.2)
    trainer.run()
    run = next((tmp_path / "run" / "runs").iterdir())
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    spikes = [e for e in events if e["event"] == "spike"]
    assert spikes, "the garbage shard should make the loss jump"
    assert {e["step"] for e in events if e["event"] == "skip_batch"} == {e["step"] for e in spikes}
    assert any(e["event"] == "lr_backoff" for e in events)


def test_bad_weights_are_rolled_back_to_the_last_good_checkpoint(tmp_path, make_shards, trainer_config):
    ms = make_shards(n_shards=10, docs_per_shard=12)
    cfg = trainer_config(adaptive={"min_history": 10}, value={"enabled": False})
    trainer = None

    def corrupt(step, batch, out):
        if step == 25:  # something wrecks the weights (think: a bad update that slipped through)
            with torch.no_grad():
                for p in trainer.session.model.parameters():
                    p.add_(torch.randn_like(p) * 0.5)

    trainer = Trainer(cfg, tmp_path / "run", ListShardFeed(ms), MemoryValuePublisher(), max_steps=40,
                      on_batch=corrupt)
    trainer.run()
    run = next((tmp_path / "run" / "runs").iterdir())
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    rollbacks = [e for e in events if e["event"] == "rollback"]
    assert len(rollbacks) == 1 and rollbacks[0]["to_step"] == 20
    assert rollbacks[0]["probe_loss"] > rollbacks[0]["good_probe_loss"]
    evals = {e["step"]: e["heldout_loss"] for e in events if e["event"] == "eval"}
    assert evals[40] < evals[20] * 1.1  # recovered
