"""The budget_prune operator: over-budget sources are pruned to the ledger with reason budget_pruned
and the budget version, deterministically; no budgets yet means nothing is pruned."""
from __future__ import annotations

import pytest

from schemas import BudgetUpdate, CuratedDocument, Rejection
from streams.budget.features import UNKNOWN, bucket_key
from streams.budget.reader import FileBudgetProvider, StaticBudgetProvider, append_update
from streams.stages.budget_prune import BudgetPruneStage
from streams.stages.registry import build_stage, operator_names
from streams.stages.validate import content_hash


def _doc(i: int, source: str, lang: str = "en", words: int = 60) -> CuratedDocument:
    text = f"document {i} from {source} " + " ".join(f"w{(i * 7 + j) % 97}" for j in range(words))
    return CuratedDocument(id=f"{source}-{i}", text=text, source=source, lang=lang, content_hash=content_hash(text),
                           recipe_version="r1", meta={"raw_ref": f"0:{i}"})


def _update(version: int = 7, **weights: float) -> BudgetUpdate:
    w = {UNKNOWN: 1.0, **weights}
    return BudgetUpdate(budget_version=version, window_tokens=100_000, budgets={k: 1000 for k in w},
                        method="test", weights=w, flagged=[])


def test_over_budget_source_is_pruned_with_reason_and_budget_version():
    stage = BudgetPruneStage(StaticBudgetProvider(_update(7, good=1.0, spam=0.2)))
    docs = [_doc(i, "good") for i in range(200)] + [_doc(i, "spam") for i in range(1000)]
    out = stage.process_batch(docs)
    assert len(out) == len(docs)
    good = out[:200]
    spam = out[200:]
    assert all(isinstance(o, CuratedDocument) for o in good)
    kept = [o for o in spam if isinstance(o, CuratedDocument)]
    pruned = [o for o in spam if isinstance(o, Rejection)]
    assert 0.15 < len(kept) / len(spam) < 0.25  # the keep rate, by hash sampling
    for r in pruned:
        assert r.reason == "budget_pruned" and r.stage == "budget_prune"
        assert r.budget_version == 7 and r.source == "spam" and r.score == pytest.approx(0.2)
        assert "why=over_budget" in r.detail and "lang=en" in r.detail
        assert r.raw_ref is not None and r.n_bytes > 0
        assert Rejection.decode(r.encode()) == r  # a valid ledger record
    assert all(k.scores["budget_version"] == 7.0 and k.scores["budget_keep"] == 0.2 for k in kept)


def test_verdicts_are_deterministic_given_the_budget_version_and_nested_as_rates_rise():
    docs = [_doc(i, "spam") for i in range(300)]
    a = BudgetPruneStage(StaticBudgetProvider(_update(3, spam=0.3))).process_batch([d for d in docs])
    b = BudgetPruneStage(StaticBudgetProvider(_update(3, spam=0.3))).process_batch(
        [_doc(i, "spam") for i in range(300)][::-1])[::-1]  # another order, another batch: same verdicts
    assert [type(x).__name__ for x in a] == [type(x).__name__ for x in b]
    c = BudgetPruneStage(StaticBudgetProvider(_update(4, spam=0.6))).process_batch(
        [_doc(i, "spam") for i in range(300)])
    kept_a = {x.id for x in a if isinstance(x, CuratedDocument)}
    kept_c = {x.id for x in c if isinstance(x, CuratedDocument)}
    assert kept_a < kept_c  # a higher keep rate only admits more


def test_low_value_bucket_is_pruned_inside_an_admitted_source():
    weights = {"web": 1.0, bucket_key("web", "lang", "en"): 1.0, bucket_key("web", "lang", "xx"): 0.1}
    stage = BudgetPruneStage(StaticBudgetProvider(_update(2, **weights)))
    out = stage.process_batch([_doc(i, "web", "en") for i in range(100)] + [_doc(i, "web", "xx") for i in range(400)])
    assert all(isinstance(o, CuratedDocument) for o in out[:100])
    pruned = [o for o in out[100:] if isinstance(o, Rejection)]
    assert len(pruned) > 300
    assert all("why=low_predicted_value" in r.detail for r in pruned)


def test_no_budget_yet_keeps_everything_and_unknown_sources_explore():
    docs = [_doc(i, "new") for i in range(50)]
    assert all(isinstance(o, CuratedDocument) for o in BudgetPruneStage(StaticBudgetProvider()).process_batch(docs))
    upd = _update(5, web=0.1)
    upd.weights[UNKNOWN] = 0.5
    out = BudgetPruneStage(StaticBudgetProvider(upd)).process_batch([_doc(i, "brand-new") for i in range(400)])
    share = sum(isinstance(o, CuratedDocument) for o in out) / 400
    assert 0.4 < share < 0.6
    assert all("key=*" in o.detail for o in out if isinstance(o, Rejection))


def test_flagged_source_is_named_in_the_detail():
    upd = _update(9, forum=0.05)
    upd.flagged = ["forum"]
    out = BudgetPruneStage(StaticBudgetProvider(upd)).process_batch([_doc(i, "forum") for i in range(50)])
    assert any(isinstance(o, Rejection) and "why=flagged_source" in o.detail for o in out)


def test_registered_operator_with_a_budgets_file_and_a_pinned_version(tmp_path, monkeypatch):
    assert "budget_prune" in operator_names()
    path = tmp_path / "budgets.jsonl"
    append_update(path, _update(1, spam=1.0))
    append_update(path, _update(2, spam=0.0001))
    latest = build_stage({"op": "budget_prune", "budgets_file": str(path)})
    out = latest.process_batch([_doc(i, "spam") for i in range(20)])
    assert all(isinstance(o, Rejection) and o.budget_version == 2 for o in out)
    pinned = build_stage({"op": "budget_prune", "budgets_file": str(path), "pin_version": 1})
    assert all(isinstance(o, CuratedDocument) for o in pinned.process_batch([_doc(i, "spam") for i in range(20)]))
    assert FileBudgetProvider(path).current().budget_version == 2
    monkeypatch.delenv("FOUNDRY_BOOTSTRAP", raising=False)
    with pytest.raises(ValueError, match="bootstrap"):  # neither a broker nor a file: a clear error
        build_stage({"op": "budget_prune"})


def test_token_estimate_feeds_the_length_bucket():
    weights = {"web": 1.0, bucket_key("web", "len", "0"): 0.0001, bucket_key("web", "len", "1"): 1.0}
    stage = BudgetPruneStage(StaticBudgetProvider(_update(3, **weights)))
    short = _doc(1, "web", words=5)  # a few dozen bytes: len=0 (< 64 tokens)
    longer = _doc(2, "web", words=120)  # ~600 bytes: len=1
    out = stage.process_batch([short, longer])
    assert isinstance(out[0], Rejection) and "len=0" in out[0].detail
    assert isinstance(out[1], CuratedDocument)


def test_worker_context_fills_a_copy_of_a_bare_entry_and_leaves_the_recipe_as_written():
    from schemas.recipe import Recipe
    from streams.stages.registry import with_context

    ctx = {"bootstrap": "broker:9092", "namespace": "ns1"}
    recipe = Recipe.model_validate({"curation": [{"op": "budget_prune"}]})
    before = recipe.version
    spec = recipe.curation[0]
    assert with_context(spec, ctx) == {"op": "budget_prune", "bootstrap": "broker:9092", "namespace": "ns1"}
    assert spec == {"op": "budget_prune"}  # a copy: the recipe's entry (and its version) is unchanged
    assert recipe.version == before
    # what the entry sets wins, each parameter on its own
    assert with_context({"op": "budget_prune", "namespace": "other"}, ctx)["namespace"] == "other"
    assert with_context({"op": "budget_prune", "namespace": "other"}, ctx)["bootstrap"] == "broker:9092"
    # a budgets file needs no broker; operators that take no context get none
    assert with_context({"op": "budget_prune", "budgets_file": "b.jsonl"}, ctx) == {
        "op": "budget_prune", "budgets_file": "b.jsonl"}
    assert with_context({"op": "quality_rules"}, ctx) == {"op": "quality_rules"}
    assert with_context({"op": "budget_prune"}, None) == {"op": "budget_prune"}


def test_build_stage_with_a_file_entry_ignores_the_worker_context(tmp_path):
    path = tmp_path / "budgets.jsonl"
    append_update(path, _update(4, spam=0.0001))
    st = build_stage({"op": "budget_prune", "budgets_file": str(path)}, {"bootstrap": "nowhere:1", "namespace": "x"})
    assert isinstance(st.provider, FileBudgetProvider)
    assert all(isinstance(o, Rejection) and o.budget_version == 4 for o in st.process_batch([_doc(1, "spam")]))
