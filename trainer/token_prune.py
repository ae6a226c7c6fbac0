"""Trainer-side pruning: low-value tokens inside admitted documents are *skipped*, not loss-masked.

Which tokens: the second and later copies of any token span of at least ``k`` tokens that
already occurred earlier in the same document (repeated lines, navigation blocks around an
article, "buy now buy now ..." spam, a table header repeated on every row). The trainer's
value scores say why: a span the model has just seen in the same context is predicted almost
perfectly by in-context copying, so its gradient is about zero ("memorized repeats score
below fresh text"); training on it costs a full forward and backward pass for nothing.

Skipped vs masked. A *masked* token (loss weight 0) still goes through the forward pass and,
in a dense transformer, through the backward pass too (the activations of every position are
differentiated, whatever the loss weights): masking changes the gradient, it saves no FLOPs.
A *skipped* token is cut out of the document before rows are packed, so it costs nothing:
the saving is ``6 N`` FLOPs per skipped token (plus attention), exactly its share of the
trained tokens. The price: the model never sees that the document repeated itself (the first
copy stays, with its context). Skipping is deterministic (a function of the document's tokens
only), so the trainer's stream position stays resumable.

Hook: the trainer's ``data.skip_repeats_k`` (0 = off): its shard reader applies
:func:`skip_repeats` to every document of a training shard as it decodes it (held-out shards
are read whole), and the stream position counts the skipped tokens (``repeat_tokens_skipped``
of ``repeat_tokens_read``, also in the run's ``run_end`` event). ``bench/budget.py`` sets it
for its budgets-on run.
"""
from __future__ import annotations

import numpy as np

_MUL = np.uint64(0x9E3779B97F4A7C15)


def _kgram_hashes(tokens: np.ndarray, k: int) -> np.ndarray:
    """A 64-bit hash of every window of ``k`` tokens (polynomial rolling hash, wrapping arithmetic)."""
    t = tokens.astype(np.uint64) + np.uint64(1)
    n = t.size - k + 1
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            h = h * _MUL + t[j:j + n]
        h ^= h >> np.uint64(29)
    return h


def repeat_mask(tokens: np.ndarray, k: int = 16) -> np.ndarray:
    """True for tokens covered by a ``k``-token window that already occurred earlier in the document."""
    tokens = np.asarray(tokens).reshape(-1)
    mask = np.zeros(tokens.size, dtype=bool)
    if k <= 0 or tokens.size < 2 * k:
        return mask
    h = _kgram_hashes(tokens, k)
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    first_of = first[inverse.reshape(-1)]
    # a window repeats when an identical one starts earlier and does not overlap it
    starts = np.nonzero(first_of + k <= np.arange(h.size))[0]
    if starts.size == 0:
        return mask
    cover = np.zeros(tokens.size + 1, dtype=np.int64)
    np.add.at(cover, starts, 1)
    np.add.at(cover, starts + k, -1)
    return np.cumsum(cover[:-1]) > 0


def skip_repeats(tokens: np.ndarray, k: int = 16, min_tokens: int = 8) -> tuple[np.ndarray, int]:
    """The document without its repeated spans, and how many tokens were skipped.

    A document is never cut below ``min_tokens`` tokens (it is returned whole instead).
    """
    mask = repeat_mask(tokens, k)
    n_skip = int(mask.sum())
    if n_skip == 0 or tokens.size - n_skip < min_tokens:
        return tokens, 0
    return np.asarray(tokens)[~mask], n_skip
