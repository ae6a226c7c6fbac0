"""Simulated trainer feedback for the allocator tests: ValueScores of documents the stage admitted."""
from __future__ import annotations

import itertools

import numpy as np

from schemas import ValueScore
from streams.budget.allocator import BudgetAllocator
from streams.budget.features import doc_buckets, keep_probability, unit_hash

_ids = itertools.count()


def window(alloc: BudgetAllocator, spec: dict[str, dict], rng: np.random.Generator, *, prune: bool = True,
           close: bool = True, ids=None):
    """One window. ``spec``: source -> {"docs": n, "value": mean, "sd": noise, "lang": {lang: (share, value shift)}}.

    Documents are pruned the way the stage would under the allocator's last update (``prune``),
    and the survivors are scored. Returns the BudgetUpdate (``close``) and the admitted token counts.
    """
    admitted: dict[str, float] = {}
    for source, s in spec.items():
        langs = s.get("lang", {"en": (1.0, 0.0)})
        names = list(langs)
        shares = np.array([langs[n][0] for n in names], dtype=float)
        for _ in range(s.get("docs", 40)):
            i = next(ids if ids is not None else _ids)
            lang = names[int(rng.choice(len(names), p=shares / shares.sum()))]
            n_tok = int(rng.integers(s.get("min_len", 80), s.get("max_len", 400)))
            if prune and alloc.last is not None:
                p = keep_probability(alloc.last.weights, source, doc_buckets(lang, n_tok))[0]
                if unit_hash(f"h{i}") >= p:
                    continue
            value = float(rng.normal(s["value"] + langs[lang][1], s.get("sd", 0.3)))
            alloc.observe(ValueScore(doc_id=f"d{i}", source=source, value=value, n_tokens=n_tok, trainer_step=i,
                                     model_version="m", method="test", bucket={"lang": lang}))
            admitted[source] = admitted.get(source, 0.0) + n_tok
    return (alloc.close_window() if close else None), admitted
