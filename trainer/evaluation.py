"""The fixed held-out set: the run's first shards, packed once into rows in file order."""
from __future__ import annotations

import numpy as np
import torch

from trainer.model import token_losses
from trainer.shard_reader import ShardReader
from trainer.shard_stream import ManifestEntry


def heldout_rows(entries: list[ManifestEntry], reader: ShardReader, *, block_size: int, sep_id: int,
                 max_rows: int) -> torch.Tensor:
    """Pack the held-out shards' documents (each followed by the boundary token) into rows.

    Deterministic: shard order of announcement, document order of the tar; a
    trailing partial row is dropped. Shards that cannot be read are left out.
    """
    row_len = block_size + 1
    parts: list[np.ndarray] = []
    total = 0
    need = max_rows * row_len
    sep = np.array([sep_id], dtype=np.int64)
    for entry in entries:
        m = entry.manifest
        try:
            docs = reader.get(m.path, m.shard, m.sha256).docs
        except Exception:  # noqa: BLE001 - an unreadable held-out shard only shrinks the set
            continue
        for doc in docs:
            parts.append(doc.tokens.astype(np.int64))
            parts.append(sep)
            total += doc.tokens.size + 1
            if total >= need:
                break
        if total >= need:
            break
    if total < row_len:
        return torch.zeros((0, row_len), dtype=torch.int64)
    flat = np.concatenate(parts)
    n_rows = min(max_rows, flat.size // row_len)
    return torch.from_numpy(flat[:n_rows * row_len].reshape(n_rows, row_len).copy())


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
