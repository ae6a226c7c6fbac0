"""Fixtures of the trainer's tests: a very small config and synthetic shard streams."""
from __future__ import annotations

import os

import pytest
import torch

from trainer.config import TrainerConfig, load_config
from trainer.synthetic_shards import make_stream

VOCAB = 64


def micro_config(**sections) -> TrainerConfig:
    """The tiny config made smaller still: a step takes a few milliseconds."""
    base = {
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
        "data": {"micro_batch_rows": 4, "replay_shards": 3, "idle_round_docs": 8, "heldout_shards": 1,
                 "heldout_max_rows": 8, "loader_workers": 1, "prefetch_rows": 16},
        "optim": {"lr": 3e-3, "warmup_steps": 5, "decay_steps": 500},
        "adaptive": {"min_history": 10, "plateau_window": 0},
        "eval": {"every": 10}, "checkpoint": {"every": 10}, "export": {"every": 0},
        "value": {"direction_every": 5, "probe_rows": 4, "publish_every": 5},
        "log_every": 5, "torch_threads": 1,
        # bench/gpu.sh runs these tests with FOUNDRY_TEST_DEVICE=cuda; auto picks CUDA where there is one
        "device": os.environ.get("FOUNDRY_TEST_DEVICE", "auto"),
    }
    for name, over in sections.items():
        base[name] = {**base.get(name, {}), **over} if isinstance(over, dict) else over
    return load_config(None, base)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def make_shards(tmp_path):
    def make(n_shards=6, docs_per_shard=12, sub="data", **kw):
        kw.setdefault("vocab_size", VOCAB)
        kw.setdefault("doc_len", (10, 40))
        return make_stream(tmp_path / sub, n_shards=n_shards, docs_per_shard=docs_per_shard, **kw)
    return make


@pytest.fixture
def trainer_config():
    """Factory: ``trainer_config(data={...}, value={...})`` -> a micro TrainerConfig."""
    return micro_config
