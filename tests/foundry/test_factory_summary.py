"""The loop's summary: budget history, trainer figures and the tables a user reads."""
from __future__ import annotations

import json

from rich.console import Console

from foundry.factory_summary import budget_history, keep_rates_over_time, render_summary, trainer_figures


def _update(v, weights, flagged=()):
    return {"budget_version": v, "weights": weights, "flagged": list(flagged), "seen": 1000.0 + v}


def test_keep_rates_over_time_use_the_unknown_rate_for_sources_a_budget_does_not_name(tmp_path):
    path = tmp_path / "budgets.jsonl"
    ups = [_update(3, {"*": 1.0, "web": 1.0, "salad": 0.2}, ["salad"]), _update(1, {"*": 1.0, "web": 1.0}),
           _update(2, {"*": 0.8, "web": 1.0, "salad": 0.6})]
    path.write_text("".join(json.dumps(u) + "\n" for u in ups))
    hist = budget_history(path)
    assert [u["budget_version"] for u in hist] == [1, 2, 3]
    rates = keep_rates_over_time(hist, ["salad", "web"])
    assert rates["salad"] == {"first": 1.0, "middle": 0.6, "last": 0.2}
    assert rates["web"] == {"first": 1.0, "middle": 1.0, "last": 1.0}
    assert keep_rates_over_time([], ["web"]) == {}
    assert budget_history(tmp_path / "missing.jsonl") == []


def test_trainer_figures_read_every_run_of_the_trainer(tmp_path):
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    events = [{"event": "train", "step": 20, "loss": 9.0}, {"event": "eval", "step": 25, "heldout_loss": 9.5,
                                                             "train_tokens": 1000},
              {"event": "eval", "step": 50, "heldout_loss": 8.5, "train_tokens": 2000}, "not json",
              {"event": "checkpoint", "step": 61}]
    (run / "events.jsonl").write_text("\n".join(e if isinstance(e, str) else json.dumps(e) for e in events))
    t = trainer_figures(tmp_path)
    assert t["steps"] == 61 and t["train_tokens"] == 2000 and t["evaluations"] == 2
    assert (t["heldout_loss_first"], t["heldout_loss_last"]) == (9.5, 8.5)
    assert trainer_figures(tmp_path / "none")["heldout_loss_first"] is None


def test_render_summary_shows_the_loop_figures():
    summary = {"docs_in": 120, "kept": 100, "rejected": 20, "accounted": 120, "drained": True,
               "rejected_by_reason": {"budget_pruned": 5, "duplicate": 15}, "shards": 4, "tokens": 12345,
               "trainer": {"steps": 61, "train_tokens": 2000, "heldout_loss_first": 9.5, "heldout_loss_last": 8.5,
                           "heldout_first_step": 25, "heldout_last_step": 50},
               "budget": {"versions_published": 3, "versions_applied": [1, 2, 3], "docs_pruned": 5,
                          "bytes_pruned": 5000, "tokens_pruned_est": 1250, "flagged": ["salad"],
                          "keep_rate_over_time": {"salad": {"first": 1.0, "middle": 0.6, "last": 0.2}}},
               "by_source": {"salad": {"in": 40, "kept": 25, "keep_rate": 0.625,
                                       "rejected": {"budget_pruned": 5, "duplicate": 10}},
                             "web": {"in": 80, "kept": 75, "keep_rate": 0.938, "rejected": {"duplicate": 5}}},
               "restarts": {"worker-0": 1, "trainer": 0}, "out_dir": "out/x", "run_dir": "var/x"}
    console = Console(record=True, width=120)
    render_summary(summary, console)
    text = console.export_text()
    for piece in ("documents in", "120", "12,345 tokens", "9.500 (step 25) -> 8.500 (step 50)",
                  "3 versions published, applied by the workers: 3", "~1,250 tokens", "salad", "worker-0 1",
                  "0.62", "0.20", "budget pruned"):
        assert piece in text, piece
