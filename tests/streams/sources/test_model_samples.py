"""Sampling documents from the trainer's exported model."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streams.sources.model_samples import ModelSampleSource
from streams.stages.tokenize import tokenizer_version
from trainer.config import ModelConfig
from trainer.export import export_onnx
from trainer.model import GPT

TOKENIZER = Path(__file__).resolve().parents[3] / "models" / "tokenizer" / "foundry-sp32k-v1.model"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=32), 32000 + 1)  # + boundary token
    out = tmp_path_factory.mktemp("export")
    export_onnx(model, out, "r0-s0", meta={"tokenizer_version": tokenizer_version(TOKENIZER), "vocab_size": 32000})
    return out


def test_samples_are_reproducible_marked_and_resumable(export_dir):
    src = ModelSampleSource(export_dir, TOKENIZER, n_docs=4, seed=3, max_tokens=12)
    docs = list(src)
    assert [d.id for d in docs] == [f"synthetic-model:3:{i}" for i in range(4)]
    assert all(d.meta["synthetic"] and d.meta["kind"] == "model_sample" for d in docs)
    assert all(0 < len(src.sp.encode(d.text)) <= 14 for d in docs if d.text)
    again = ModelSampleSource(export_dir, TOKENIZER, n_docs=4, seed=3, max_tokens=12)
    assert [d.text for d in again] == [d.text for d in docs]
    (key,) = again.inputs()
    resumed = [item.doc.id for item in again.read(key, {"index": 2})]
    assert resumed == ["synthetic-model:3:2", "synthetic-model:3:3"]
    other_seed = ModelSampleSource(export_dir, TOKENIZER, n_docs=4, seed=4, max_tokens=12)
    assert [d.text for d in other_seed] != [d.text for d in docs]


def test_wrong_tokenizer_or_missing_export_is_a_clear_error(export_dir, tmp_path):
    from streams.stages.tokenizer_training import train_tokenizer

    other = train_tokenizer(["some text for a tiny tokenizer"] * 50, tmp_path, vocab_size=300, max_mb=0.1)
    with pytest.raises(ValueError, match="trained on tokenizer"):
        ModelSampleSource(export_dir, other)
    with pytest.raises(FileNotFoundError, match="latest.json"):
        ModelSampleSource(tmp_path / "none", TOKENIZER)
