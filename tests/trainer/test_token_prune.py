"""Trainer-side skipping of repeated token spans inside a document."""
from __future__ import annotations

import numpy as np

from trainer.token_prune import repeat_mask, skip_repeats


def test_repeated_spans_are_skipped_and_the_first_copy_stays():
    rng = np.random.default_rng(0)
    line = rng.integers(0, 500, 30)
    doc = np.concatenate([rng.integers(0, 500, 50), line, rng.integers(0, 500, 20), line, line,
                          rng.integers(0, 500, 10)])
    mask = repeat_mask(doc, k=16)
    assert mask.sum() == 60  # the second and third copies of the 30-token line
    assert not mask[:100].any()  # the first copy and everything before it stays
    out, n = skip_repeats(doc, k=16)
    assert n == 60 and out.size == doc.size - 60
    # fresh text and short documents are untouched
    fresh = rng.integers(0, 50_000, 400)
    assert skip_repeats(fresh, 16)[1] == 0
    assert skip_repeats(np.zeros(20, dtype=np.int64), 16)[1] == 0
    # a run of one token is cut down to about one window
    assert skip_repeats(np.full(300, 7), 16)[0].size == 16
