"""The run's fixed held-out rows: a value probe and, disjoint from it, an evaluation set.

The probe steers training (value scores' held-out gradient, the schedule's
rollback check); the evaluation set only measures it (held-out loss). They
never share a document, so the loss that is reported is not the one the
value scores optimize.

Where the documents come from (``data.heldout_from``):

* ``first_shards``: the documents of the run's first ``heldout_shards`` shards, in
  announcement and tar order; the first ones fill the probe rows, the rest the
  evaluation rows.
* ``reserved``: the reserved sample of the training shards announced so far (in
  order): documents with ``reserve_draw < reserve_probe`` fill the probe, those in
  ``[reserve_probe, reserve_probe + reserve_eval)`` the evaluation set. Training
  reads leave both out. The sets are filled once, at the first step, from the shards
  announced by then (the run's checkpoints keep the rows, so a resume uses the same ones).

Documents are packed back to back, each followed by the boundary token; a
trailing partial row is dropped. Unreadable shards only shrink the sets.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from trainer.config import DataConfig
from trainer.model import token_losses
from trainer.shard_reader import Doc, ShardReader
from trainer.shard_stream import ManifestEntry


@dataclass
class HeldoutSets:
    probe: torch.Tensor  # (rows, block_size + 1) token ids
    eval: torch.Tensor
    probe_docs: int = 0
    eval_docs: int = 0


class _Packer:
    """Collects whole documents until ``max_rows`` rows of ``row_len`` tokens are full."""

    def __init__(self, row_len: int, max_rows: int, sep_id: int):
        self.row_len, self.max_rows, self.sep_id = row_len, max_rows, sep_id
        self.parts: list[np.ndarray] = []
        self.total = 0
        self.docs = 0

    @property
    def full(self) -> bool:
        return self.total >= self.max_rows * self.row_len

    def add(self, tokens: np.ndarray, cap: int | None = None) -> None:
        """Add a document, cut to ``cap`` tokens (a source's share of the set)."""
        tokens = tokens[:cap] if cap is not None else tokens
        self.parts.append(tokens.astype(np.int64))
        self.parts.append(np.array([self.sep_id], dtype=np.int64))
        self.total += tokens.size + 1
        self.docs += 1

    def rows(self) -> torch.Tensor:
        if self.total < self.row_len or self.max_rows <= 0:
            return torch.zeros((0, self.row_len), dtype=torch.int64)
        flat = np.concatenate(self.parts)
        n_rows = min(self.max_rows, flat.size // self.row_len)
        return torch.from_numpy(flat[:n_rows * self.row_len].reshape(n_rows, self.row_len).copy())


def _docs_of(entries: Iterable[ManifestEntry], reader: ShardReader) -> Iterator[Doc]:
    for entry in entries:
        m = entry.manifest
        try:
            docs = reader.get(m.path, m.shard, m.sha256).docs  # whole: no repeat cut, no reserve cut
        except Exception:  # noqa: BLE001 - an unreadable held-out shard only shrinks the set
            continue
        yield from docs


def heldout_sets(entries: Iterable[ManifestEntry], reader: ShardReader, data: DataConfig, *, block_size: int,
                 sep_id: int, probe_rows: int) -> HeldoutSets:
    """Build the probe and evaluation rows from ``entries`` (held-out shards, or training shards
    for the reserved sample) as ``data.heldout_from`` says; see the module docstring."""
    row_len = block_size + 1
    probe = _Packer(row_len, probe_rows, sep_id)
    evals = _Packer(row_len, data.heldout_max_rows, sep_id)
    reserved = data.heldout_from == "reserved"
    taken: dict[tuple[int, str], int] = {}  # tokens per (set, source) with heldout_sources
    for doc in _docs_of(entries, reader):
        if probe.full and evals.full:
            break
        if reserved:
            if data.heldout_sources and doc.source not in data.heldout_sources:
                continue
            if doc.draw < data.reserve_probe:
                target = probe
            elif doc.draw < data.reserve_probe + data.reserve_eval:
                target = evals
            else:
                continue
        else:
            target = evals if probe.full else probe
        if target.full:
            continue
        if reserved and data.heldout_sources:
            # each named source fills about an equal share, so one with long documents does not define "value"
            share = -(-target.max_rows * target.row_len // len(data.heldout_sources))
            key = (id(target), doc.source)
            room = share - taken.get(key, 0)
            if room <= 0:
                continue
            target.add(doc.tokens, cap=room)
            taken[key] = taken.get(key, 0) + min(room, doc.tokens.size) + 1
        else:
            target.add(doc.tokens)
    return HeldoutSets(probe.rows(), evals.rows(), probe.docs, evals.docs)


@torch.no_grad()
def heldout_loss(model: torch.nn.Module, rows: torch.Tensor, *, micro_batch_rows: int, device: torch.device,
                 autocast: bool = False) -> float:
    """Mean next-token loss over every target of the held-out rows."""
    if rows.shape[0] == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for i in range(0, rows.shape[0], micro_batch_rows):
            chunk = rows[i:i + micro_batch_rows].to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
                losses = token_losses(model, chunk)
            total += float(losses.double().sum())
            count += losses.numel()
    finally:
        model.train(was_training)
    return total / count
