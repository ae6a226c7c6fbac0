"""What ``foundry up`` runs: one YAML names every process of the factory and its settings.

Every field has a default, so an empty file (or no ``--config``) is a working
factory: a local broker when none answers, the default recipe, one stream
worker, the shard writer, the ledger, the tiny continuous trainer, the budget
agent and a word-salad generator at 5 documents a second. Unknown fields and
bad values are errors that name the field.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainerSettings(_Strict):
    enabled: bool = True
    config: str = "tiny"  # a shipped trainer config name or a YAML path
    set: dict[str, Any] = Field(default_factory=dict)  # dotted overrides, as `foundry train --set`
    threads: int = Field(1, ge=1)  # torch threads: the trainer's share of the CPU ...
    nice: int = Field(10, ge=0, le=19)  # ... and its priority next to the pipeline


class BudgetSettings(_Strict):
    enabled: bool = True
    window_tokens: int = Field(20_000, gt=0)  # close a budget window after this many scored tokens ...
    window_s: float = Field(15.0, gt=0)  # ... or this many seconds with scores buffered
    set: dict[str, Any] = Field(default_factory=dict)  # AllocatorConfig fields


class SourceSettings(_Strict):
    """One source process. ``kind``: generator (word salad, or ``gen_kind`` boilerplate/repeated),
    files (a corpus, or a drop folder with ``watch_s``), warc (WARC files or folders), crawl
    (``seeds``)."""

    kind: Literal["generator", "files", "warc", "crawl"]
    name: str  # the source name on every document (and the process name: source-<name>)
    rate: float | None = Field(None, gt=0)  # documents a second (None: as fast as it can)
    paths: list[str] = Field(default_factory=list)
    watch_s: float | None = Field(None, gt=0)
    licence: str | None = None
    gen_kind: Literal["mixed", "boilerplate", "repeated"] = "mixed"
    n_docs: int = Field(0, ge=0)  # generator: 0 = no end
    seed: int = 0
    flood_after: int | None = Field(None, ge=0)
    flood_docs: int | None = Field(None, ge=0)
    seeds: list[str] = Field(default_factory=list)
    extra_args: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _needs(self) -> "SourceSettings":
        if self.kind in ("files", "warc") and not self.paths:
            raise ValueError(f"source {self.name!r}: kind {self.kind} needs paths")
        if self.watch_s is not None and self.kind != "files":
            raise ValueError(f"source {self.name!r}: watch_s is for kind files (a drop folder)")
        if self.kind == "crawl" and not self.seeds:
            raise ValueError(f"source {self.name!r}: kind crawl needs seeds")
        return self


class RestartSettings(_Strict):
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    stable_s: float = Field(30.0, gt=0)  # a process up this long has its backoff reset


class FactoryConfig(_Strict):
    run_dir: str = "var/factory"  # logs, ps.json, summary.json, the trainer's and sources' state
    bootstrap: str = "127.0.0.1:9092"
    kafka_home: str | None = "var/kafka"  # start a local broker here when none answers (None: never)
    namespace: str = "live"
    raw_topic: str = "foundry.raw"
    recipe: str = "default"  # a shipped recipe name or a YAML path
    out: str = "out"
    workers: int = Field(1, ge=1)
    replication: int | None = Field(None, ge=1)  # topic replication (None: the cluster's default)
    trainer: TrainerSettings = Field(default_factory=TrainerSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    sources: list[SourceSettings] = Field(default_factory=lambda: [
        SourceSettings(kind="generator", name="synthetic", rate=5.0)])
    restart: RestartSettings = Field(default_factory=RestartSettings)
    metrics_port: int = Field(9400, ge=0, le=65000)  # first exporter port, one per process (0: none)
    drain_timeout_s: float = Field(120.0, ge=0)  # `foundry down`: wait this long for the pipeline to drain

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, v: list[SourceSettings]) -> list[SourceSettings]:
        names = [s.name for s in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"source names must be unique: {', '.join(dup)}")
        return v

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir)


class ConfigError(ValueError):
    """A factory config that cannot be used; the message names the field."""


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def load_factory_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> FactoryConfig:
    """The config in ``path`` (None: all defaults), with top-level ``overrides`` applied on top."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read factory config {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"factory config {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"factory config {path} must be a mapping of settings")
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return FactoryConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"factory config {path or '(defaults)'} is invalid:\n{_describe(exc)}") from None
