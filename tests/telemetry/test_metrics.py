"""The recording helpers, without processes."""
from __future__ import annotations

import math

from prometheus_client import generate_latest

from schemas import BudgetUpdate, CuratedDocument, Rejection
from telemetry import metrics
from telemetry.scrape import parse


def _doc(i: int, source: str, text: str = "héllo wörld") -> CuratedDocument:
    return CuratedDocument(id=f"d{i}", text=text, source=source, content_hash=f"h{i}", recipe_version="r")


def test_outcomes_are_counted_by_stage_source_and_reason():
    before = parse(generate_latest().decode())
    outcomes = [_doc(1, "web"), _doc(2, "web"),
                Rejection(id="d3", reason="duplicate", stage="dedup", recipe_version="r", source="web", n_bytes=7),
                Rejection(id="d4", reason="too_large", stage="validate", recipe_version="r", source="books")]
    metrics.record_outcomes("curate", outcomes)
    after = parse(generate_latest().decode())

    def delta(name, **m):
        return after.total(name, **m) - before.total(name, **m)

    assert delta("foundry_docs_in_total", stage="curate", source="web") == 3
    assert delta("foundry_docs_kept_total", stage="curate", source="web") == 2
    assert delta("foundry_docs_rejected_total", stage="curate", source="web", reason="duplicate") == 1
    assert delta("foundry_docs_rejected_total", stage="curate", source="books", reason="too_large") == 1
    # UTF-8 bytes, not characters: two texts of 13 bytes and the duplicate's 7.
    assert delta("foundry_bytes_in_total", stage="curate", source="web") == 2 * 13 + 7
    assert 0 < after.total("foundry_keep_rate", source="web") <= 1
    assert after.total("foundry_keep_rate", source="books") == 0


def test_bloom_estimates_match_the_design_rate_at_capacity():
    bits = math.ceil(-1_000_000 * math.log(0.001) / math.log(2) ** 2)
    fill, fp = metrics.bloom_estimates(bits, 1_000_000, 1_000_000)
    assert abs(fill - 0.5) < 0.01 and 0.0008 < fp < 0.0012
    assert metrics.bloom_estimates(bits, 1_000_000, 0) == (0.0, 0.0)
    half = metrics.bloom_estimates(bits, 1_000_000, 500_000)[1]
    assert half < fp / 10


def test_budget_update_sets_budgets_and_clears_flags():
    metrics.record_budget(BudgetUpdate(budget_version=3, window_tokens=100, budgets={"a": 60, "b": 40},
                                       method="m", flagged=["b"]))
    metrics.record_budget(BudgetUpdate(budget_version=4, window_tokens=100, budgets={"a": 70, "b": 30},
                                       method="m", flagged=[]))
    s = parse(generate_latest().decode())
    assert s.total("foundry_budget_version") == 4
    assert s.by("foundry_budget_tokens", "key") == {"a": 70, "b": 30}
    assert s.by("foundry_source_flagged", "key") == {"a": 0, "b": 0}


def test_trainer_events_feed_the_trainer_gauges():
    metrics.observe_trainer_event("train", {"step": 12, "loss": 3.5, "tokens_per_s": 900.0, "train_tokens": 4096})
    metrics.observe_trainer_event("eval", {"heldout_loss": 3.9, "train_tokens": 5000})
    s = parse(generate_latest().decode())
    assert s.total("foundry_trainer_loss") == 3.5 and s.total("foundry_trainer_step") == 12
    assert s.total("foundry_trainer_heldout_loss") == 3.9 and s.total("foundry_trainer_tokens") == 5000


def test_exporter_port_must_be_a_number(monkeypatch):
    monkeypatch.setattr(metrics, "_started", {})
    monkeypatch.setenv("FOUNDRY_METRICS_PORT", "abc")
    try:
        metrics.start_exporter()
    except ValueError as exc:
        assert "FOUNDRY_METRICS_PORT" in str(exc)
    else:
        raise AssertionError("a bad port was accepted")
    monkeypatch.setenv("FOUNDRY_METRICS_PORT", "0")
    assert metrics.start_exporter() is None


def test_a_port_in_use_leaves_the_process_running_without_an_exporter(monkeypatch, caplog):
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        monkeypatch.setattr(metrics, "_started", {})
        monkeypatch.setenv("FOUNDRY_METRICS_PORT", str(busy.getsockname()[1]))
        assert metrics.start_exporter() is None
        assert not metrics.exporter_enabled()
        assert "metrics exporter not started" in caplog.text
    finally:
        busy.close()


def test_a_source_counts_what_it_publishes(tmp_path):
    from streams.sources.progress import CheckpointStore
    from streams.sources.synthetic import SyntheticConfig, SyntheticSource
    from tests.streams.sources.test_runner import FakePublisher, FakeTopic, _runner

    before = parse(generate_latest().decode())
    topic = FakeTopic()
    source = SyntheticSource(SyntheticConfig(n_docs=60, seed=3), source="metered")
    summary = _runner(topic, CheckpointStore(tmp_path), lambda: FakePublisher(topic)).run(source, "generate")
    after = parse(generate_latest().decode())
    published = after.total("foundry_source_docs_published_total", source="metered") - \
        before.total("foundry_source_docs_published_total", source="metered")
    assert published == summary.published == len(topic.log) == 60
    assert after.total("foundry_source_bytes_published_total", source="metered") == summary.bytes_in > 0
