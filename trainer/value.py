"""Value scores: how much training on a document helps the held-out loss, to first order.

Method ``heldout_alignment/v1``. Let ``g`` be the gradient of the held-out
loss (on a fixed probe set of held-out rows) and ``u = g / |g|``. The value of
a document ``d`` at the current weights ``w`` is

    value(d) = <grad L_d(w), u>  ~=  (L_d(w + eps u) - L_d(w - eps u)) / (2 eps)

where ``L_d`` is the mean next-token loss over the document's tokens in the
batch that trained it. A gradient step on ``d`` moves the weights by
``-lr * grad L_d``, which changes the held-out loss by about
``-lr * |g| * value(d)``: a positive value means training on ``d`` lowers the
held-out loss, zero means it teaches nothing the held-out set cares about (a
document the model has already memorized has ``grad L_d ~ 0``), and a negative
value means it pulls the model away from the held-out distribution (random
tokens push the predictions toward uniform, which raises the held-out loss).

Cost: two extra forward passes of each scored batch (no backward) and one
forward and backward of the probe rows every ``direction_every`` steps. With
``difference: forward`` (the CPU default) the loss at ``w`` comes from the
training forward pass and only ``L_d(w - eps u)`` is computed: one extra
forward pass. (Under bf16 autocast the training losses are not precise
enough for that, and the central difference is used whatever the setting.) The
central difference is exact for a quadratic loss; ``eps`` is small next to the
weights' norm. The held-out gradient is the plain one (not Adam's
preconditioned step), as in TracIn-style data attribution.

Scores are token-weighted over the parts of a document that were trained, so
a document that spans two batches gets one score. Aggregates per source and
per ``source|bucket=value`` (bucket: language, domain) are the token-weighted
means of the documents scored since the previous publication.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch

from schemas.records import ValueScore
from trainer.batching import Batch
from trainer.model import token_losses
from trainer.shard_stream import DocInfo

METHOD = "heldout_alignment/v1"
AGGREGATE_PREFIX = "aggregate:"


class ValueScorer:
    """Per-document alignment with the held-out gradient, by central differences."""

    def __init__(self, model: torch.nn.Module, probe: torch.Tensor, epsilon: float = 1e-2):
        self.model = model
        self.probe = probe  # (rows, T + 1) held-out token ids
        self.epsilon = epsilon
        self.direction: list[torch.Tensor] | None = None
        self.heldout_grad_norm = 0.0

    def _params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def refresh_direction(self) -> float:
        """Recompute the unit held-out gradient at the current weights; returns its norm."""
        params = self._params()
        loss = token_losses(self.model, self.probe).mean()
        grads = torch.autograd.grad(loss, params)
        norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads)).item()
        scale = 1.0 / max(norm, 1e-12)
        self.direction = [g.detach() * scale for g in grads]
        self.heldout_grad_norm = norm
        return norm

    @torch.no_grad()
    def _shifted_losses(self, tokens: torch.Tensor, sign: float, saved: list[torch.Tensor]) -> torch.Tensor:
        for p, s, u in zip(self._params(), saved, self.direction):
            p.copy_(s).add_(u, alpha=sign * self.epsilon)
        return token_losses(self.model, tokens)

    @torch.no_grad()
    def score(self, batch: Batch, base: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per document slot of the batch: (sum over its tokens of d loss / d eps, token count).

        With ``base`` (the per-token losses at the current weights, from the
        training forward pass, in full precision) the one-sided difference
        ``(L(w) - L(w - eps u)) / eps`` is used: one extra forward pass instead
        of two, with an error of order ``eps`` instead of ``eps^2``.
        """
        if self.direction is None:
            with torch.enable_grad():
                self.refresh_direction()
        n_slots = len(batch.docs)
        sums = torch.zeros(n_slots, dtype=torch.float64)
        counts = torch.zeros(n_slots, dtype=torch.float64)
        if n_slots == 0:
            return sums, counts
        tokens = batch.tokens.to(self.probe.device)
        params = self._params()
        saved = [p.detach().clone() for p in params]
        was_training = self.model.training
        self.model.eval()
        try:
            if base is None:
                plus = self._shifted_losses(tokens, +1.0, saved)
                minus = self._shifted_losses(tokens, -1.0, saved)
                slope = (plus - minus) / (2.0 * self.epsilon)
            else:
                slope = (base.to(tokens.device) - self._shifted_losses(tokens, -1.0, saved)) / self.epsilon
        finally:
            for p, s in zip(params, saved):
                p.copy_(s)
            self.model.train(was_training)
        slope = slope.double().cpu().reshape(-1)
        slot = batch.target_doc.reshape(-1)
        keep = slot >= 0
        sums.index_add_(0, slot[keep], slope[keep])
        counts.index_add_(0, slot[keep], torch.ones_like(slope[keep]))
        return sums, counts


@dataclass
class DocValue:
    doc: DocInfo
    value: float
    scored_tokens: int
    step: int


class ValueLedger:
    """Collects partial scores per document occurrence until the document ends, then
    turns finished documents into ValueScore records and per-bucket aggregates."""

    def __init__(self) -> None:
        self.partial: dict[tuple[int, int], list[Any]] = {}  # occurrence -> [sum, count, DocInfo]
        self.finished: list[DocValue] = []

    def add_partial(self, batch: Batch, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """Add the scores of (part of) a batch; ``sums``/``counts`` are indexed by ``batch.docs``."""
        for i, slot in enumerate(batch.docs):
            acc = self.partial.setdefault(slot.occurrence, [0.0, 0.0, slot.doc])
            acc[0] += float(sums[i])
            acc[1] += float(counts[i])

    MAX_OPEN = 100_000  # a document whose end fell in a skipped batch is never closed: forget the oldest

    def close_batch(self, batch: Batch, step: int) -> None:
        """Documents that end in this batch get their score."""
        for slot in batch.docs:
            if slot.last and slot.occurrence in self.partial:
                total, count, doc = self.partial.pop(slot.occurrence)
                if count > 0:
                    self.finished.append(DocValue(doc, total / count, int(count), step))
        while len(self.partial) > self.MAX_OPEN:
            del self.partial[next(iter(self.partial))]

    def drain(self, model_version: str) -> list[ValueScore]:
        """Records for the documents finished since the last drain, then the aggregates."""
        out: list[ValueScore] = []
        agg: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = defaultdict(lambda: [0.0, 0.0, 0, 0])
        for dv in self.finished:
            d = dv.doc
            out.append(ValueScore(doc_id=d.doc_id, source=d.source, value=dv.value, n_tokens=d.n_tokens,
                                  trainer_step=dv.step, model_version=model_version, method=METHOD,
                                  bucket=dict(d.bucket), shard=d.shard))
            keys = [()] + [((k, v),) for k, v in d.bucket]
            for key in keys:
                acc = agg[(d.source, key)]
                acc[0] += dv.value * dv.scored_tokens
                acc[1] += dv.scored_tokens
                acc[2] += d.n_tokens
                acc[3] = max(acc[3], dv.step)
        for (source, key), (vsum, weight, n_tokens, step) in sorted(agg.items()):
            name = source + "".join(f"|{k}={v}" for k, v in key)
            out.append(ValueScore(doc_id=AGGREGATE_PREFIX + name, source=source, value=vsum / max(weight, 1.0),
                                  n_tokens=int(n_tokens), trainer_step=int(step), model_version=model_version,
                                  method=METHOD + "/mean", bucket=dict(key), shard=None))
        self.finished = []
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"partial": {k: [v[0], v[1], v[2]] for k, v in self.partial.items()},
                "finished": list(self.finished)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.partial = {tuple(k): list(v) for k, v in d["partial"].items()}
        self.finished = list(d["finished"])
