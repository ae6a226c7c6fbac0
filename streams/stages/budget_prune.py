"""Budget pruning: apply the current token budgets, drop what is over budget or predicted low value.

Operator ``budget_prune``; put it **last** in the recipe's ``curation`` list, so it runs
right before the tokenizer. Why there: every quality filter has already
spoken (budget is never spent on a document another stage would reject), and a pruned
document costs neither tokenization nor shard space nor, above all, training compute. After
the tokenizer it would know exact token counts but would have paid the tokenizer for
documents it then drops; the token count it needs for the length bucket is estimated from the
text instead (CJK characters and other bytes apart; ``bytes_per_token`` and
``cjk_chars_per_token`` calibrate it to the tokenizer; a document that already carries tokens
uses their count).

Each document is judged under the newest :class:`~schemas.BudgetUpdate` *effective at its
ingest time* (``meta["ingested_at"]``, stamped by the worker's ingest agent), from its provider's
``at(t)`` (see ``streams/budget/reader.py``), not under whatever version is current when its batch
runs: a document delivered again after a crash gets the version, and so the verdict, its first
delivery got (docs/exactly-once.md). A document without an ingest time (fed by a replay, or
written by an older build) is judged under the newest update (the pinned one in a replay). For
each document it computes the keep probability ``p``
of its source and buckets (``streams/budget/features.py``: source keep rate times the bucket
factors of its language and length bucket - the per-document value predictor the allocator
learns from the trainer's scores) and a uniform number ``u`` from its content hash. ``u < p``:
kept, with ``scores["budget_keep"] = p`` and ``scores["budget_version"]``. Otherwise a
Rejection ``budget_pruned`` with ``budget_version`` set, ``score = p`` and a detail
``why=<over_budget|low_predicted_value|flagged_source> keep=<p> u=<u> lang=<l> len=<b> key=<key>``
(``over_budget``: the source's own rate already excludes it; ``low_predicted_value``: its
buckets did). The verdict depends only on the document and the budget version: a redelivered
document under the same version gets the same verdict, and rising keep rates only ever admit
more documents (``u`` does not depend on the version).

Without any BudgetUpdate yet (the agent has not published), everything is kept.

Recipe parameters: ``namespace`` / ``bootstrap`` (the Kafka budgets topic; default
``$FOUNDRY_NAMESPACE`` or ``live`` and ``$FOUNDRY_BOOTSTRAP``), or ``budgets_file`` (+
``pin_version``) for a JSON-lines file; ``wait_s`` (wait this long at start for the topic to be
read), ``salt``, ``dims``, ``len_edges``, ``bytes_per_token``, ``cjk_chars_per_token``. A
provider object can be passed directly (``provider=``) in code.

Inside ``foundry worker`` / ``foundry run`` a bare ``{op: budget_prune}`` reads the budgets
topic of the worker's own namespace on the worker's own broker: the worker passes its
``bootstrap`` and ``namespace`` as context (``streams/stages/registry.py``), for each one the
entry does not set, and none when the entry names a ``budgets_file``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from schemas import BudgetUpdate, CuratedDocument, Reason
from streams.budget.features import (DEFAULT_DIMS, DEFAULT_LEN_EDGES, UNKNOWN, doc_buckets, estimate_tokens,
                                     keep_probability, source_key, unit_hash)
from streams.stages.base import Outcome, Stage
from streams.stages.registry import register


class BudgetPruneStage(Stage):
    name = "budget_prune"

    def __init__(self, provider: Any, *, salt: str = "budget-v1", dims: Sequence[str] = DEFAULT_DIMS,
                 len_edges: Sequence[int] = DEFAULT_LEN_EDGES, bytes_per_token: float = 4.0,
                 cjk_chars_per_token: float = 1.0):
        self.provider = provider
        self.salt = str(salt)
        self.dims = tuple(dims)
        self.len_edges = tuple(int(e) for e in len_edges)
        self.bytes_per_token = float(bytes_per_token)
        self.cjk_chars_per_token = float(cjk_chars_per_token)
        self.kept = 0
        self.pruned = 0

    def n_tokens(self, doc: CuratedDocument) -> float:
        if doc.tokens_b64 is not None:
            return float(doc.n_tokens)
        return estimate_tokens(doc.text, bytes_per_token=self.bytes_per_token,
                               cjk_chars_per_token=self.cjk_chars_per_token)

    def buckets(self, doc: CuratedDocument) -> dict[str, str]:
        return doc_buckets(doc.lang, self.n_tokens(doc), self.dims, self.len_edges)

    def update_for(self, doc: CuratedDocument, cache: dict) -> BudgetUpdate | None:
        t = doc.meta.get("ingested_at")
        if not isinstance(t, (int, float)) or isinstance(t, bool):
            t = None
        if t not in cache:  # one look-up per ingest batch: its documents share the time
            at = getattr(self.provider, "at", None)
            cache[t] = at(t) if at is not None else self.provider.current()
        return cache[t]

    def process_batch(self, docs: Sequence[CuratedDocument]) -> list[Outcome]:
        cache: dict = {}
        out: list[Outcome] = []
        for doc in docs:
            update = self.update_for(doc, cache)
            if update is None:  # no update effective yet: everything is kept
                self.kept += 1
                out.append(doc)
                continue
            buckets = self.buckets(doc)
            p, base, used = keep_probability(update.weights, doc.source, buckets)
            u = unit_hash(doc.content_hash, self.salt)
            if u < p:
                doc.scores["budget_keep"] = round(p, 6)
                doc.scores["budget_version"] = float(update.budget_version)
                out.append(doc)
                self.kept += 1
                continue
            if source_key(doc.source) in update.flagged:
                why = "flagged_source"
            elif u >= base:
                why = "over_budget"
            else:
                why = "low_predicted_value"
            detail = (f"why={why} keep={p:.4f} u={u:.4f} "
                      + " ".join(f"{k}={v}" for k, v in buckets.items())
                      + f" key={used if used == UNKNOWN else source_key(doc.source)}")
            rej = self.reject(doc, Reason.BUDGET_PRUNED, detail, score=round(p, 6))
            rej.budget_version = update.budget_version
            out.append(rej)
            self.pruned += 1
        return out


def _provider(namespace: str | None, bootstrap: str | None, budgets_file: str | None, pin_version: int | None,
              wait_s: float):
    if budgets_file:
        from streams.budget.reader import FileBudgetProvider

        return FileBudgetProvider(budgets_file, pin_version=pin_version)
    bootstrap = bootstrap or os.environ.get("FOUNDRY_BOOTSTRAP")
    namespace = namespace or os.environ.get("FOUNDRY_NAMESPACE") or "live"
    if not bootstrap:
        raise TypeError("budget_prune needs bootstrap (or $FOUNDRY_BOOTSTRAP) or budgets_file")
    from streams.budget.reader import KafkaBudgetReader

    reader = KafkaBudgetReader(bootstrap, namespace)
    if wait_s > 0:
        reader.wait_ready(wait_s)
    return reader


@register("budget_prune", context=("bootstrap", "namespace"), context_unless=("budgets_file", "provider"))
def budget_prune_stage(provider: Any = None, namespace: str | None = None, bootstrap: str | None = None,
                       budgets_file: str | None = None, pin_version: int | None = None, wait_s: float = 10.0,
                       **params: Any) -> BudgetPruneStage:
    """Recipe entry ``{op: budget_prune}`` (budgets from the namespace's topic) or
    ``{op: budget_prune, budgets_file: budgets.jsonl, pin_version: 12}``."""
    if provider is None:
        provider = _provider(namespace, bootstrap, budgets_file, pin_version, float(wait_s))
    return BudgetPruneStage(provider, **params)
