"""Budget versions by effective time: the history, the file provider, the agent's stamp, and the
stage judging each document under the update effective at its ingest time."""
from __future__ import annotations

import time

import pytest

from schemas import BudgetUpdate, CuratedDocument, Rejection
from streams.budget.agent import stamp_effective
from streams.budget.reader import LEAD_S, BudgetHistory, FileBudgetProvider, append_update, budget_messages
from streams.stages.budget_prune import BudgetPruneStage


def upd(version: int, rate: float, eff: float | None) -> BudgetUpdate:
    return BudgetUpdate(budget_version=version, window_tokens=100, budgets={"*": 10}, method="t",
                        weights={"*": rate}, effective_at=eff)


def test_history_answers_by_effective_time_and_never_goes_back():
    h = BudgetHistory()
    h.add(upd(1, 0.5, 100.0))
    h.add(upd(3, 0.7, 300.0))
    h.add(upd(2, 0.6, 350.0))  # late and out of order: effective only from 350, not before v3's 300
    assert h.at(99.0) is None
    assert h.at(100.0).budget_version == 1
    assert h.at(299.9).budget_version == 1
    # v3 (own time 300) counts from the running maximum 350, so v2 and v3 never both change a time back
    assert h.effective(3) == 350.0 and h.at(340.0).budget_version == 1
    assert h.at(350.0).budget_version == 3
    assert h.at(None).budget_version == 3
    assert h.add(upd(3, 0.9, 1.0)) is False and h.at(400.0).weights == {"*": 0.7}  # first copy wins


def test_v1_updates_count_from_the_time_they_were_published():
    h = BudgetHistory()
    h.add(upd(1, 0.5, None), published_at=50.0)
    assert h.at(49.0) is None and h.at(50.0).budget_version == 1


def test_evicted_versions_come_back_through_fetch_and_memory_stays_bounded():
    stored = {}
    fetched = []

    def fetch(where):
        fetched.append(where)
        return stored[where]

    h = BudgetHistory(keep=3, fetch=fetch)
    for v in range(1, 11):
        stored[("p0", v)] = upd(v, v / 10, float(v))
        h.add(stored[("p0", v)], where=("p0", v))
    assert len(h._full) == 3 and len(h) == 10
    assert h.at(2.5).budget_version == 2 and fetched == [("p0", 2)]
    assert h.at(10.0).budget_version == 10 and fetched == [("p0", 2)]  # kept: not fetched


def test_a_version_that_cannot_be_read_back_is_an_error_not_another_version():
    h = BudgetHistory(keep=1, fetch=lambda where: None)
    h.add(upd(1, 0.5, 1.0), where=("p0", 1))
    h.add(upd(2, 0.5, 2.0), where=("p0", 2))
    with pytest.raises(LookupError, match="version 1"):
        h.at(1.5)


def test_file_provider_by_time_and_pinned(tmp_path):
    path = tmp_path / "budgets.jsonl"
    append_update(path, upd(1, 0.2, 10.0))
    append_update(path, upd(2, 0.8, 20.0))
    live = FileBudgetProvider(path)
    assert live.at(15.0).budget_version == 1 and live.at(25.0).budget_version == 2
    assert live.at(5.0) is None and live.current().budget_version == 2
    pinned = FileBudgetProvider(path, pin_version=1)
    assert pinned.at(25.0).budget_version == 1 and pinned.at(None).budget_version == 1


def test_agent_stamps_ahead_and_strictly_later_than_the_last():
    state: dict = {}
    a, b = upd(1, 0.5, None), upd(2, 0.5, None)
    before = time.time()
    stamp_effective(a, state)
    stamp_effective(b, state)
    assert a.effective_at >= before + LEAD_S - 0.01 and b.effective_at > a.effective_at


def test_budget_messages_carry_a_history_key_and_the_namespace_key():
    msgs = budget_messages("live", upd(7, 0.5, 1.0))
    assert [k for k, _ in msgs] == [b"live@v7", b"live"]
    assert all(BudgetUpdate.decode(v).budget_version == 7 for _, v in msgs)


class _ByTime:
    """A provider whose answer depends on the time asked, recording the times."""

    def __init__(self):
        self.asked = []
        self.history = BudgetHistory()
        self.history.add(upd(1, 0.0, 100.0))  # prune all
        self.history.add(upd(2, 1.0, 200.0))  # keep all

    def current(self):
        return self.history.newest()

    def at(self, t):
        self.asked.append(t)
        return self.history.at(t)


def _doc(i: int, ingested_at=None) -> CuratedDocument:
    meta = {} if ingested_at is None else {"ingested_at": ingested_at}
    return CuratedDocument(id=f"d{i}", text=f"text number {i} " * 20, source="web", content_hash=f"{i:016x}",
                           recipe_version="r", meta=meta)


def test_stage_judges_each_document_under_the_update_of_its_ingest_time():
    provider = _ByTime()
    stage = BudgetPruneStage(provider)
    docs = [_doc(1, 150.0), _doc(2, 150.0), _doc(3, 250.0), _doc(4, 50.0), _doc(5)]
    out = stage.process_batch(docs)
    assert isinstance(out[0], Rejection) and out[0].budget_version == 1
    assert isinstance(out[1], Rejection)
    assert isinstance(out[2], CuratedDocument) and out[2].scores["budget_version"] == 2.0
    assert isinstance(out[3], CuratedDocument) and "budget_version" not in out[3].scores  # before any update
    assert isinstance(out[4], CuratedDocument) and out[4].scores["budget_version"] == 2.0  # no time: newest
    assert sorted(provider.asked, key=str) == sorted([150.0, 250.0, 50.0, None], key=str)  # once per time
    # the same documents again, later, with more versions published: the same verdicts
    provider.history.add(upd(3, 0.0, 300.0))
    again = stage.process_batch([_doc(1, 150.0), _doc(3, 250.0)])
    assert isinstance(again[0], Rejection) and again[0].budget_version == 1
    assert isinstance(again[1], CuratedDocument) and again[1].scores["budget_version"] == 2.0
