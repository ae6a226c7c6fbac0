"""ONNX export of the trainer's language model, written so a reader can hot-reload it.

What reads it today: the model-samples source (``streams/sources/model_samples.py``,
``foundry generate --checkpoint``), which samples documents from the newest export
with onnxruntime. No curation stage scores with it (the density operator has its own
byte-level model, ``models/density/``).

Every export is a new, versioned file ``lm-{model_version}.onnx``: it is
written under a temporary name, fsynced, checked in onnxruntime against the
torch logits, and only then renamed into place. After that ``latest.json`` is
replaced atomically; it names the file and says how to feed it. A reader that
polls ``latest.json`` therefore never opens a half-written or unchecked model.

Graph: input ``tokens`` int64 (batch, time), time <= block_size; output
``logits`` float32 (batch, time, vocab_size + 1). Logit ``i`` at position
``t`` scores token ``i`` at ``t + 1``; the last id (``vocab_size``) is the
trainer's document-boundary token.
"""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iolayer.atomic_files import atomic_write, atomic_write_bytes


EXPORT_PREFIX = "lm-"


class ExportError(RuntimeError):
    pass


def check_onnx(path: Path, model: torch.nn.Module, tokens: torch.Tensor, atol: float = 1e-3) -> float:
    """Run the file in onnxruntime; raise unless its logits match torch's. Returns the max difference."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"tokens": tokens.numpy()})[0]
    with torch.no_grad():
        want = model(tokens).float().numpy()
    diff = float(np.max(np.abs(got - want)))
    if not np.isfinite(diff) or diff > atol:
        raise ExportError(f"onnxruntime logits differ from torch by {diff:.3g} (> {atol})")
    return diff


def export_onnx(model: torch.nn.Module, out_dir: Path, model_version: str, *, meta: dict[str, Any],
                opset: int = 17, check: bool = True, keep: int = 3) -> Path:
    """Export, check, publish; returns the path of the new model file."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cpu_model = copy.deepcopy(model).to("cpu").float().eval()
    block = cpu_model.cfg.block_size
    vocab = cpu_model.vocab_size
    gen = torch.Generator().manual_seed(0)
    example = torch.randint(0, vocab, (2, min(block, 16)), generator=gen)
    final = out_dir / f"{EXPORT_PREFIX}{model_version}.onnx"

    def write_checked(tmp: Path) -> float | None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(cpu_model, (example,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=["tokens"], output_names=["logits"],
                              dynamic_axes={"tokens": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"}})
        if not check:
            return None
        # another batch and length than the one traced: the axes really are dynamic
        probe = torch.randint(0, vocab, (3, min(block, 19)), generator=gen)
        return check_onnx(tmp, cpu_model, probe)

    diff = atomic_write(final, write_checked)  # a file that fails its check is never published
    pointer = dict(meta, path=str(final.resolve()), file=final.name, model_version=model_version,
                   input="tokens", output="logits", block_size=block, model_vocab=vocab,
                   boundary_token=vocab - 1, check_max_abs_diff=diff)
    atomic_write_bytes(out_dir / "latest.json", (json.dumps(pointer, indent=2) + "\n").encode())
    exports = sorted(out_dir.glob(f"{EXPORT_PREFIX}*.onnx"), key=lambda p: p.stat().st_mtime)
    for old in exports[:-max(keep, 1)]:
        if old != final:
            old.unlink(missing_ok=True)
    return final


def read_latest(out_dir: Path) -> dict[str, Any] | None:
    """The pointer a reader of the exports polls (None before the first export)."""
    try:
        return json.loads((Path(out_dir) / "latest.json").read_text())
    except (OSError, ValueError):
        return None
