"""The allocation rule: low value gets less, floors hold, new sources explore, poisoned sources are
capped and flagged, and a restart from the table state continues exactly where it stopped."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from schemas import BudgetUpdate, Rejection
from streams.budget.allocator import META_KEY, METHOD, AllocatorConfig, BudgetAllocator
from streams.budget.features import UNKNOWN, bucket_key, doc_buckets, keep_probability

from .helpers import window

GOOD = {"docs": 40, "value": 1.0}
JUNK = {"docs": 40, "value": -0.2}


def run(alloc, spec, n, seed=0, **kw):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        upd, _ = window(alloc, spec, rng, **kw)
        out.append(upd)
    return out


def test_low_value_source_gets_less_and_the_update_is_well_formed():
    alloc = BudgetAllocator()
    ups = run(alloc, {"good": GOOD, "web": {"docs": 40, "value": 0.9}, "junk": JUNK}, 12)
    last = ups[-1]
    assert isinstance(last, BudgetUpdate) and last.method == METHOD
    assert [u.budget_version for u in ups] == list(range(1, 13))
    assert last.weights["good"] == 1.0 and last.weights["web"] == 1.0
    assert last.weights["junk"] < 0.3
    assert last.budgets["junk"] < 0.3 * last.budgets["good"]
    assert sum(last.budgets[k] for k in ("good", "web", "junk")) <= last.window_tokens
    # a round trip through the wire format
    assert BudgetUpdate.decode(last.encode()) == last
    assert alloc.judged_low_value("junk") and not alloc.judged_low_value("good")


def test_no_difference_no_pruning():
    alloc = BudgetAllocator()
    last = run(alloc, {"a": GOOD, "b": GOOD, "c": GOOD}, 10)[-1]
    assert all(last.weights[k] == 1.0 for k in "abc")


def test_floor_holds_for_a_worthless_source():
    cfg = AllocatorConfig(source_floor=0.05, min_keep=0.05)
    alloc = BudgetAllocator(cfg)
    spec = {"good": {"docs": 30, "value": 1.0}, "junk": {"docs": 90, "value": -1.0}}  # junk: 75% of supply
    rng = np.random.default_rng(0)
    for _ in range(25):
        upd, _ = window(alloc, spec, rng)
        share = alloc.stats["junk"].supply / sum(alloc.stats[k].supply for k in ("good", "junk"))
        assert upd.weights["junk"] >= max(cfg.min_keep, min(1.0, cfg.source_floor / share)) - 1e-5
        # the floor in tokens: the junk budget is at least source_floor of the window
        assert upd.budgets["junk"] >= cfg.source_floor * upd.window_tokens * 0.99
    assert upd.weights["junk"] < 0.1  # it did go down to (about) the floor
    # and the supply estimate survives the pruning (Horvitz-Thompson), so the floor is real
    true_share = 0.75
    share = alloc.stats["junk"].supply / (alloc.stats["junk"].supply + alloc.stats["good"].supply)
    assert abs(share - true_share) < 0.15


def test_bucket_floor_and_low_value_language_bucket():
    alloc = BudgetAllocator(AllocatorConfig(bucket_floor=0.1))
    spec = {"web": {"docs": 80, "value": 1.0, "lang": {"en": (0.5, 0.0), "xx": (0.5, -1.2)}},
            "books": {"docs": 40, "value": 0.6}}
    last = run(alloc, spec, 15)[-1]
    en, xx = last.weights[bucket_key("web", "lang", "en")], last.weights[bucket_key("web", "lang", "xx")]
    assert en == 1.0 and xx < 0.5
    assert xx >= 0.1 * last.weights["web"] / 0.5 - 1e-6  # >= bucket_floor of the source's budget
    p_en = keep_probability(last.weights, "web", doc_buckets("en", 200))[0]
    p_xx = keep_probability(last.weights, "web", doc_buckets("xx", 200))[0]
    assert p_xx < p_en


def test_exploration_share_for_new_sources():
    cfg = AllocatorConfig(explore_share=0.1, explore_tokens=30_000)
    alloc = BudgetAllocator(cfg)
    run(alloc, {"good": GOOD, "junk": JUNK}, 8)
    assert alloc.last.weights[UNKNOWN] == cfg.unknown_keep
    # a small new source (about 5% of the supply): admitted in full while it is new, whatever its value
    spec = {"good": GOOD, "junk": JUNK, "small": {"docs": 4, "value": -1.0}}
    upd = run(alloc, spec, 1, seed=1)[-1]
    assert upd.weights["small"] == 1.0
    # a big new source (about 50% of the supply): not judged on a value it has not shown yet; new
    # sources get at least explore_share of the window, and at least the typical established keep rate
    alloc2 = BudgetAllocator(cfg)
    run(alloc2, {"good": GOOD, "junk": JUNK}, 8)
    upd = run(alloc2, {"good": GOOD, "junk": JUNK, "big": {"docs": 80, "value": 1.0}}, 1, seed=2)[-1]
    sup = {k: alloc2.stats[k].supply for k in ("good", "junk", "big")}
    share = sup["big"] / sum(sup.values())
    typical = (sup["good"] * upd.weights["good"] + sup["junk"] * upd.weights["junk"]) / (sup["good"] + sup["junk"])
    assert upd.weights["big"] == pytest.approx(min(1.0, max(cfg.explore_share / share, typical)), abs=1e-5)
    assert upd.budgets["big"] >= cfg.explore_share * upd.window_tokens * 0.99
    # a cold start (nothing established yet) admits everything
    cold = BudgetAllocator(cfg)
    upd = run(cold, {"good": GOOD, "junk": JUNK}, 1)[-1]
    assert upd.weights["good"] == upd.weights["junk"] == 1.0
    # once established, it is judged on its value like everyone else
    upd = run(alloc2, {"good": GOOD, "junk": JUNK, "big": {"docs": 80, "value": 1.0}}, 12, seed=3)[-1]
    assert upd.weights["big"] == 1.0 and upd.weights["junk"] < 0.5


def test_sudden_high_value_is_quarantined_capped_and_flagged():
    alloc = BudgetAllocator()
    base = {"good": GOOD, "forum": {"docs": 40, "value": 0.2}, "junk": JUNK}
    run(alloc, base, 10)
    keep_before = alloc.last.weights["forum"]
    theta_before = alloc.stats["forum"].theta
    assert keep_before < 1.0
    upd = run(alloc, {**base, "forum": {"docs": 40, "value": 6.0}}, 1, seed=7)[-1]
    assert "forum" in upd.flagged
    assert "value_high" in alloc.report()["flags"]["forum"]
    assert "forum" in alloc.report()["quarantined"]
    assert upd.weights["forum"] <= keep_before + 1e-9  # not trusted blindly: no more budget
    assert alloc.stats["forum"].theta <= theta_before + 1e-9
    upd = run(alloc, {**base, "forum": {"docs": 40, "value": 6.0}}, 1, seed=8)[-1]
    assert "forum" in upd.flagged and upd.weights["forum"] <= keep_before + 1e-9


def test_sudden_low_value_and_near_duplicate_flood_are_capped_at_the_floor():
    alloc = BudgetAllocator()
    base = {"good": GOOD, "forum": {"docs": 40, "value": 0.9}, "wiki": {"docs": 40, "value": 1.0}}
    run(alloc, base, 10)
    assert alloc.last.weights["forum"] == 1.0
    upd = run(alloc, {**base, "forum": {"docs": 40, "value": -3.0}}, 1, seed=5)[-1]
    assert "forum" not in upd.flagged  # one bad window is a blip ...
    upd = run(alloc, {**base, "forum": {"docs": 40, "value": -3.0}}, 1, seed=6)[-1]
    assert "forum" in upd.flagged and "value_low" in alloc.report()["flags"]["forum"]  # ... two a trend
    assert upd.weights["forum"] <= alloc.config.flagged_keep

    alloc = BudgetAllocator()
    run(alloc, base, 10)
    rng = np.random.default_rng(9)
    for i in range(200):  # the pipeline rejected 200 near-duplicates of "wiki" in this window
        alloc.observe_rejection(Rejection(id=f"x{i}", reason="near_duplicate", stage="near_dedup",
                                          recipe_version="r", source="wiki"))
    upd, _ = window(alloc, base, rng)
    assert "wiki" in upd.flagged and "near_dup_flood" in alloc.report()["flags"]["wiki"]
    assert upd.weights["wiki"] <= alloc.config.flagged_keep
    assert "good" not in upd.flagged and upd.weights["good"] == 1.0


def test_restart_from_table_state_continues_exactly():
    spec = {"good": GOOD, "web": {"docs": 40, "value": 0.5, "lang": {"en": (0.7, 0.0), "de": (0.3, -0.5)}},
            "junk": JUNK}
    a = BudgetAllocator()
    run(a, spec, 6, seed=11)
    # what the agent writes to its table, through JSON (the changelog's value serializer)
    items = json.loads(json.dumps(a.table_items()))
    assert META_KEY in dict(items)
    b = BudgetAllocator.from_table(items)
    assert b.version == a.version == 6 and b.window == a.window
    assert set(b.stats) == set(a.stats)
    # the same next window gives the same update on both (the seen-id memory is not state: fresh ids)
    ua, _ = window(a, spec, np.random.default_rng(12), ids=itertools.count(10**9))
    ub, _ = window(b, spec, np.random.default_rng(12), ids=itertools.count(10**9))
    assert ua.budget_version == ub.budget_version == 7
    assert ua.weights == pytest.approx(ub.weights) and ua.budgets == ub.budgets and ua.flagged == ub.flagged


def test_config_from_dict_rejects_unknown_settings():
    assert AllocatorConfig.from_dict({"source_floor": 0.1, "dims": ["lang"]}).dims == ("lang",)
    with pytest.raises(ValueError):
        AllocatorConfig.from_dict({"sauce_floor": 0.1})


def test_aggregates_and_empty_windows_are_ignored():
    from schemas import ValueScore

    alloc = BudgetAllocator()
    assert not alloc.observe(ValueScore(doc_id="aggregate:web", source="web", value=1.0, n_tokens=100,
                                        trainer_step=1, model_version="m", method="x"))
    assert alloc.close_window() is None and alloc.version == 0


def test_supply_uses_the_stages_admission_probability_when_the_score_carries_it():
    from schemas import ValueScore

    alloc = BudgetAllocator()
    for i in range(50):  # each admitted with probability 0.25: each stands for four documents of supply
        alloc.observe(ValueScore(doc_id=f"k{i}", source="web", value=1.0, n_tokens=100, trainer_step=i,
                                 model_version="m", method="t", bucket={"lang": "en", "budget_keep": "0.25"}))
    alloc.close_window()
    assert alloc.stats["web"].supply == pytest.approx(50 * 100 / 0.25)
    # a replay of the same documents adds value observations but no supply
    for i in range(50):
        alloc.observe(ValueScore(doc_id=f"k{i}", source="web", value=1.0, n_tokens=100, trainer_step=99,
                                 model_version="m", method="t", bucket={"lang": "en", "budget_keep": "0.25"}))
    before = alloc.stats["web"].sup
    alloc.close_window()
    assert alloc.stats["web"].sup == pytest.approx(before * 0.5 ** (1 / alloc.config.half_life_windows))
