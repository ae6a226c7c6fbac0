"""The budget benchmark's accounting: compute to reach L* counts scoring, savings are against the unpruned arm."""
from __future__ import annotations

import pytest

from bench.budget_report import add_savings, first_reach, flatness


def _run(arm, policy, losses, score_per_step=0.0, train_per_step=10.0):
    curve = [(s, s * 100, s * train_per_step, s * score_per_step, loss) for s, loss in zip((1, 2, 3, 4), losses)]
    return {"arm": arm, "policy": policy, "curve": curve, "final_loss": losses[-1],
            "train_flops": 4 * train_per_step, "score_flops": 4 * score_per_step}


def test_first_reach_interpolates_on_total_compute():
    run = _run("v", "value", [5.0, 4.0, 3.0, 2.0], score_per_step=5.0)
    tokens, flops = first_reach(run["curve"], 3.5)
    assert tokens == pytest.approx(250.0) and flops == pytest.approx(2.5 * 15.0)
    assert first_reach(run["curve"], 1.0) is None


def test_scoring_compute_can_turn_a_token_saving_into_a_loss():
    none = _run("none", "none", [5.0, 4.0, 3.0, 2.0])
    cheap = _run("random", "random", [4.5, 3.0, 2.0, 1.5])  # reaches 2.0 at step 3: 25 % less compute
    costly = _run("value", "value", [4.5, 3.0, 2.0, 1.5], score_per_step=5.0)  # same tokens, +50 % compute
    target = add_savings([none, cheap, costly])
    assert target == 2.0 and none["saving"] == pytest.approx(0.0)
    assert cheap["saving"] == pytest.approx(0.25)
    assert costly["saving"] == pytest.approx(1 - 45.0 / 40.0) and costly["score_share"] == pytest.approx(0.5)
    never = _run("static", "static", [6.0, 5.5, 5.2, 5.1])
    add_savings([none, never])
    assert never["saving"] is None and never["reach_flops"] is None


def test_flatness_compares_the_tail_drop_with_the_seed_spread():
    by_seed = {0: [_run("none", "none", [5.0, 4.0, 3.0, 2.0])], 1: [_run("none", "none", [5.0, 4.0, 3.0, 2.2])]}
    flat = flatness(by_seed)
    assert flat["tail_drop"] == pytest.approx((1.0 + 0.8) / 2) and flat["final_sd"] == pytest.approx(0.1414, abs=1e-3)
