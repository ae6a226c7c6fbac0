"""kill -9 of the trainer while it writes a checkpoint (its temporary file exists): it restarts
from the newest whole checkpoint, the leftover temporary goes, and the factory's output stays
exactly once."""
from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults.factory_driver import Factory, fault_rounds, full_suite_only, wait_for
from trainer.checkpoint import CheckpointStore

pytestmark = pytest.mark.kafka


def _checkpoint_dirs(run_dir):
    return [p for p in (run_dir / "trainer").rglob("checkpoints") if p.is_dir()]


def _whole_steps(run_dir) -> list[int]:
    return sorted(s for d in _checkpoint_dirs(run_dir) for s in CheckpointStore(d).steps())


def _kill_mid_checkpoint(factory: Factory, timeout: float = 120) -> tuple[bool, int]:
    """SIGKILL the trainer as soon as a checkpoint's temporary file shows, once a whole one
    exists; (whether one was caught, else it is killed at the deadline; the newest whole step)."""
    p = wait_for(lambda: factory.running("trainer"), 120, "the trainer running")
    wait_for(lambda: _whole_steps(factory.run_dir), 240, "a first whole checkpoint", every=0.5)
    deadline = time.monotonic() + timeout
    caught = False
    while time.monotonic() < deadline and not caught:
        caught = any(any(d.glob(".ckpt-*.tmp")) for d in _checkpoint_dirs(factory.run_dir))
        if not caught:
            time.sleep(0.002)
    os.killpg(p["pid"], signal.SIGKILL)
    whole = _whole_steps(factory.run_dir)[-1]
    wait_for(lambda: factory.running("trainer", p["restarts"] + 1), 180, "the trainer restarted")
    return caught, whole


@full_suite_only
def test_trainer_killed_mid_checkpoint_resumes_from_a_whole_one(cluster3, tmp_path, unique_name):
    trainer = {"enabled": True, "config": "tiny", "set": {"checkpoint.every": 5, "eval.every": 0,
                                                           "export.every": 0}}
    factory = Factory(tmp_path, cluster3.bootstrap, unique_name, n_docs=0, rate=40, trainer=trainer)
    factory.up()
    caught, newest_whole = 0, 0
    rounds = max(2, fault_rounds() // 4)
    try:
        for _ in range(rounds):
            hit, whole = _kill_mid_checkpoint(factory)
            caught += hit
            newest_whole = max(newest_whole, whole)
        # After the last restart it writes checkpoints again, each readable.
        time.sleep(20)
    finally:
        summary = factory.down_and_audit()
    dirs = _checkpoint_dirs(factory.run_dir)
    assert dirs, "the trainer wrote no checkpoint"
    store = CheckpointStore(dirs[0])
    assert store.load_latest() is not None
    # Resumed from a whole checkpoint, not from scratch: it went on past the newest one before a kill.
    assert store.steps()[-1] > newest_whole, (store.steps(), newest_whole)
    assert not list(dirs[0].glob(".ckpt-*.tmp"))  # the killed writes' temporaries were cleared
    assert summary["restarts"]["trainer"] >= rounds
    assert caught >= 1, "no kill landed while a checkpoint was being written"
    print(f"trainer: {rounds} SIGKILLs, {caught} while a checkpoint was being written; newest checkpoint "
          f"step {store.steps()[-1]} loads; audit clean")
