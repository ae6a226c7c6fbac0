"""The trainer's settings: one YAML file, validated into nested models.

Every field has a default, so a config file only names what it changes;
``trainer/configs/default.yaml`` (2 CPU cores, useful rate) and ``tiny.yaml``
(tests and demos, seconds) are the two shipped ones.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Section):
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 128  # tokens per training row (context length)


class DataConfig(_Section):
    seed: int = 1234
    micro_batch_rows: int = 16  # rows per forward pass; a step is one or more micro-batches
    new_fraction: float = Field(0.75, gt=0.0, le=1.0)  # share of a round's documents from the new shard
    replay_shards: int = 8  # the replay buffer: this many most recent trained shards
    idle_round_docs: int = 256  # documents of a replay-only round (no new shard yet)
    replay_when_idle: bool = True  # train on the replay buffer while no new shard has arrived
    # Where the held-out documents come from (never trained on either way):
    #   first_shards: the first ``heldout_shards`` shards a run is announced;
    #   reserved: a fixed sample of every source: documents whose content-hash draw in [0, 1)
    #     is below reserve_probe are the value probe, those in [reserve_probe, reserve_probe +
    #     reserve_eval) the evaluation set; training reads leave both out (trainer/shard_reader.py).
    # Either way the probe (value scores, rollback checks) and the evaluation set (held-out loss)
    # are disjoint documents, so what steers training is never what measures it.
    heldout_from: Literal["first_shards", "reserved"] = "first_shards"
    heldout_shards: int = 1  # first_shards: this many shards; the first documents fill the probe rows
    heldout_max_rows: int = 64  # rows of the evaluation set
    reserve_probe: float = Field(0.01, ge=0.0, lt=0.5)
    reserve_eval: float = Field(0.02, ge=0.0, lt=0.5)
    # reserved: the probe and evaluation documents come from these sources only (empty: every source),
    # so "value" means "helps on the text we want", not on a junk source's own reserved sample
    heldout_sources: list[str] = Field(default_factory=list)
    max_doc_tokens: int = 8192  # longer documents are cut
    # trainer-side pruning: cut the 2nd and later copies of any span of >= k tokens repeated inside a
    # training document (trainer/token_prune.py); skipped tokens cost no compute. 0 = off
    skip_repeats_k: int = Field(0, ge=0)
    loader_workers: int = 2  # shard readers that decode the next shards in parallel
    loader_kind: Literal["thread", "process"] = "thread"
    prefetch_rows: int = 512  # rows built ahead of the training step
    verify_sha256: bool = True

    @model_validator(mode="after")
    def _reserved_sample_is_not_empty(self) -> "DataConfig":
        if self.heldout_from == "reserved" and (self.reserve_probe <= 0 or self.reserve_eval <= 0):
            raise ValueError("heldout_from: reserved needs reserve_probe > 0 and reserve_eval > 0")
        return self

    def reserved_fraction(self) -> float:
        """Share of every training shard's documents kept out of training (0 with first_shards)."""
        return self.reserve_probe + self.reserve_eval if self.heldout_from == "reserved" else 0.0

    def heldout_shard_count(self) -> int:
        return self.heldout_shards if self.heldout_from == "first_shards" else 0


class OptimConfig(_Section):
    lr: float = 6e-4
    min_lr: float = 6e-5
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    warmup_steps: int = 200
    decay: Literal["cosine", "inv_sqrt", "constant"] = "cosine"
    decay_steps: int = 20000  # cosine reaches min_lr here and stays there


class AdaptiveConfig(_Section):
    enabled: bool = True
    mean_beta: float = 0.9  # EMA of the loss (about 10 steps: follows the falling trend)
    ema_beta: float = 0.98  # EMA of the step-to-step noise variance (about 50 steps)
    threshold_sigmas: float = 4.0  # a spike: loss above mean + k * std ...
    min_rel_rise: float = 0.05  # ... and at least this much above the mean (relative)
    min_history: int = 50  # steps before the detector may fire
    lr_backoff: float = 0.5  # lr multiplier after a spike
    lr_recover_steps: int = 100  # steps for the multiplier to climb back to 1 (geometric)
    min_lr_mult: float = 0.05
    rollback_after: int = 3  # consecutive spikes: check the held-out probe, roll back if it got worse
    rebaseline_after: int = 20  # consecutive spikes: the data's loss level moved, take it as the new level
    grow_batch_after: int = 3  # spike episodes within grow_window steps: double the batch
    grow_window: int = 500
    healthy_window: int = 100  # a checkpoint with no spike in this many steps before it is a good one
    plateau_window: int = 500  # raise the batch too when the loss stops falling over this many steps
    plateau_rel: float = 0.005
    max_batch_mult: int = 8  # batch can grow to max_batch_mult micro-batches


class EvalConfig(_Section):
    every: int = 200


class CheckpointConfig(_Section):
    every: int = 500
    keep: int = 3


class ExportConfig(_Section):
    every: int = 1000  # ONNX export of the language model (what `foundry generate --checkpoint` samples); 0 = never
    opset: int = 17
    check: bool = True  # load it in onnxruntime and compare logits before publishing


class ValueConfig(_Section):
    enabled: bool = True
    every: int = 1  # score the documents of every k-th step (1 = every trained document)
    direction_every: int = 25  # refresh the held-out gradient direction every k steps
    probe_rows: int = 8  # probe rows for the direction (disjoint from the evaluation rows: data.heldout_from)
    epsilon: float = 1e-2  # finite-difference step along the unit held-out gradient
    difference: Literal["central", "forward"] = "central"  # forward: one extra forward pass instead of two
    publish_every: int = 50  # steps between ValueScore batches


class TrainerConfig(_Section):
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    adaptive: AdaptiveConfig = AdaptiveConfig()
    eval: EvalConfig = EvalConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    export: ExportConfig = ExportConfig()
    value: ValueConfig = ValueConfig()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = True  # autocast to bfloat16 on CUDA (ignored on CPU)
    compile: bool = False  # torch.compile the model
    torch_threads: int = 0  # 0 = torch's default
    log_every: int = 10


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, val in over.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], val)
        else:
            out[key] = val
    return out


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainerConfig:
    """Read a YAML config (a path, or a shipped name such as ``tiny``) and apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists() and (CONFIG_DIR / f"{path}.yaml").exists():
            p = CONFIG_DIR / f"{path}.yaml"
        data = yaml.safe_load(p.read_text()) or {}
    if overrides:
        data = _merge(data, overrides)
    return TrainerConfig.model_validate(data)
