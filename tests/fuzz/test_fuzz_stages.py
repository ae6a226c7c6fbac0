"""Every stage of the default recipe (validate, the bloom dedup, each curation operator, the
tokenizer) over hostile documents: each input ends as a kept document or a rejection with a
reason, in order, and nothing raises; a document at the size limit stays within a memory bound."""
from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import CuratedDocument, RawDocument, Reason, Rejection
from schemas.recipe import load_recipe
from streams.partition_state import PartitionState
from streams.stages.dedup import BloomDeduper
from streams.stages.registry import build_stage
from streams.stages.tokenize import SentencePieceTokenizer
from streams.stages.validate import Validator
from tests.fuzz.hostile import NASTY_PIECES, html_bomb, hostile_text, nasty_text

REASONS = {r.value for r in Reason}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The default recipe's stages in one partition's order (budget_prune from an empty budgets
    file, as a worker before the first BudgetUpdate)."""
    recipe = load_recipe()
    budgets = tmp_path_factory.mktemp("budgets") / "budgets.jsonl"
    budgets.write_text("")
    stages = [BloomDeduper(10_000, recipe.dedup.fp_rate)]
    for spec in recipe.curation:
        spec = {**spec, "budgets_file": str(budgets)} if spec["op"] == "budget_prune" else spec
        stages.append(build_stage(spec))
    stages.append(SentencePieceTokenizer(recipe.tokenizer.model))
    return Validator(recipe.version, recipe.validate_.max_bytes, recipe.validate_.min_chars), PartitionState(stages)


def _run(pipeline, raws: list[RawDocument]) -> list:
    validator, state = pipeline
    first = [validator(r) for r in raws]
    live = [o for o in first if isinstance(o, CuratedDocument)]
    rest = iter(state.process(live))
    out = [o if isinstance(o, Rejection) else next(rest) for o in first]
    assert next(rest, None) is None
    for raw, o in zip(raws, out):
        assert o.id == raw.id  # one outcome per input, in order, under the input's id
        if isinstance(o, Rejection):
            assert o.reason in REASONS and o.stage
            Rejection.decode(o.encode())  # the ledger can carry it
        else:
            assert o.tokens is not None
            CuratedDocument.decode(o.encode())  # the shard writer can read it
    return out


def _wire(value: str | None) -> str | None:
    """What a raw message can carry: valid UTF-8, so lone surrogates (which the file source
    turns into defects, tests/fuzz/test_fuzz_sources.py) arrive replaced."""
    return None if value is None else value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


doc_text = st.one_of(hostile_text, nasty_text, st.lists(st.sampled_from(NASTY_PIECES + list("ab .")), min_size=100,
                                                         max_size=3000).map("".join),
                     st.builds(lambda w, n: (w + " ") * n, st.text(min_size=1, max_size=8), st.integers(1, 2000)),
                     st.integers(1, 3000).map(html_bomb))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(texts=st.lists(doc_text, min_size=1, max_size=8), ids=st.lists(nasty_text, min_size=8, max_size=8),
       urls=st.lists(st.one_of(st.none(), nasty_text), min_size=8, max_size=8),
       langs=st.lists(st.one_of(st.none(), nasty_text), min_size=8, max_size=8))
def test_hostile_documents_each_end_kept_or_rejected_with_a_reason(pipeline, texts, ids, urls, langs):
    raws = [RawDocument(id=_wire(f"{i}{ids[i]}"), text=_wire(t), source=_wire(ids[-1 - i]) or "s",
                        url=_wire(urls[i]), lang=_wire(langs[i])) for i, t in enumerate(texts)]
    _run(pipeline, raws)


def test_a_document_at_the_size_limit_and_an_html_bomb_stay_within_a_memory_bound(pipeline):
    validator, _ = pipeline
    limit = validator.max_bytes
    raws = [RawDocument(id="at-limit", text=("word " * (limit // 5))[:limit], source="s"),
            RawDocument(id="over-limit", text="x" * (limit + 1), source="s"),
            RawDocument(id="bomb", text=html_bomb(limit // 24), source="s")]
    _run(pipeline, raws[:1])  # models and lazy tables are loaded outside the measurement
    tracemalloc.start()
    try:
        out = _run(pipeline, raws)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out[1].reason == "too_large"
    # Bound (Python allocations; onnxruntime's own buffers are not traced): 200 bytes per byte of
    # the largest admitted document, i.e. 200 MB at the default 1 MB limit.
    assert peak < 200 * limit, peak
