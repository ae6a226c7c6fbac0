"""The recipe contract: which stages run, with which parameters, validated with pydantic.

The recipe version is a content hash of the resolved recipe (every parameter,
plus the tokenizer model's own hash), so any change to what would be produced
gives a new version, and that version is stamped on every shard and ledger row.

The file format itself is versioned apart from that hash: a recipe file may say
``schema_version: N``; this build reads up to :data:`RECIPE_SCHEMA_VERSION` and
refuses newer files with a clear error instead of misreading them. The default
recipes ship beside this module (``schemas/recipes/``), so they are found from a
checkout and from an installed wheel alike.
"""
from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RECIPES_DIR = Path(__file__).parent / "recipes"
DEFAULT_RECIPE = RECIPES_DIR / "default.yaml"
RECIPE_SCHEMA_VERSION = 1
PACKAGE_REF = "pkg:"  # tokenizer.model "pkg:<package>/<path>": a file shipped inside an installed package


def tokenizer_version(model_path: str | Path) -> str:
    """The tokenizer's part of the recipe version: a hash of the model file's bytes."""
    return "sp-" + hashlib.sha256(Path(model_path).read_bytes()).hexdigest()[:12]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValidateConfig(_Strict):
    max_bytes: int = Field(1_000_000, gt=0)
    min_chars: int = Field(1, ge=1)


class DedupConfig(_Strict):
    capacity: int = Field(1_000_000, gt=0)
    fp_rate: float = Field(0.001, gt=0, lt=1)
    snapshot_every: int = Field(20_000, gt=0)  # messages per partition between filter snapshots


class TokenizerConfig(_Strict):
    model: str | None = None  # path to a .model; None = train one on the first train_mb of the stream
    train_mb: float = Field(4.0, gt=0)
    vocab_size: int = Field(8000, ge=300)
    model_type: str = "unigram"
    version: str | None = None  # filled in when the recipe is resolved


class ShardConfig(_Strict):
    max_tokens: int = Field(1 << 20, gt=0)
    max_bytes: int = Field(64 << 20, gt=0)
    timeout_s: float | None = Field(5.0, gt=0)  # None: close only at a bound or at the end of a replay


class BatchConfig(_Strict):
    size: int = Field(256, gt=0)
    within_s: float = Field(0.5, gt=0)


class Recipe(_Strict):
    SCHEMA_VERSION: ClassVar[int] = RECIPE_SCHEMA_VERSION

    name: str = "default"
    partitions: int = Field(4, ge=1, le=64)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    curation: list[dict[str, Any]] = Field(default_factory=list)  # [{op: name, **params}, ...]
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    shards: ShardConfig = Field(default_factory=ShardConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _file_format(cls, data: Any) -> Any:
        # the file format's version is not part of the content hash: same stages, same version
        if isinstance(data, dict) and "schema_version" in data:
            data = dict(data)
            fmt = data.pop("schema_version")
            if not isinstance(fmt, int) or isinstance(fmt, bool) or not 1 <= fmt <= RECIPE_SCHEMA_VERSION:
                raise ValueError(f"schema_version {fmt!r} is not supported "
                                 f"(this build reads up to {RECIPE_SCHEMA_VERSION})")
        return data

    @field_validator("curation")
    @classmethod
    def _ops_named(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, spec in enumerate(v):
            if "op" not in spec:
                raise ValueError(f"curation[{i}] has no 'op'")
        return v

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")

    @property
    def version(self) -> str:
        """12 hex chars of sha256 over the canonical JSON of the resolved recipe."""
        if self.tokenizer.model and not self.tokenizer.version:
            raise ValueError("resolve the recipe (tokenizer version) before asking for its version")
        body = self.to_dict()
        # Only what changes the output counts: the tokenizer's path is where, its
        # version is what; batching and the idle timeout only change timing.
        body["tokenizer"]["model"] = None
        body.pop("batch")
        body["shards"].pop("timeout_s")
        canon = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:12]

    def with_tokenizer(self, model_path: str | Path) -> Recipe:
        tok = self.tokenizer.model_copy(update={"model": str(Path(model_path).resolve()),
                                                "version": tokenizer_version(model_path)})
        return self.model_copy(update={"tokenizer": tok})

    def save(self, path: str | Path) -> None:
        body = {"schema_version": self.SCHEMA_VERSION, **self.to_dict()}
        Path(path).write_text(yaml.safe_dump(body, sort_keys=False, allow_unicode=True))


class RecipeError(ValueError):
    pass


def load_recipe(path: str | Path | None = None) -> Recipe:
    path = Path(path) if path else DEFAULT_RECIPE
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"invalid recipe {path}: expected a mapping, got {type(data).__name__}")
    try:
        recipe = Recipe.model_validate(data)
    except Exception as exc:  # pydantic's ValidationError names every bad field
        raise RecipeError(f"invalid recipe {path}:\n{exc}") from None
    tok = recipe.tokenizer
    if tok.model:
        model = resolve_file_ref(tok.model, path)
        if not model.exists():
            raise RecipeError(f"recipe {path}: tokenizer model {model} does not exist")
        recipe = recipe.with_tokenizer(model)
    return recipe


def resolve_file_ref(ref: str, recipe_path: str | Path) -> Path:
    """Where a file a recipe names is. ``pkg:<package>/<path>`` is inside an installed package,
    found by name (importlib.resources), so the recipe works from a checkout, a wheel, or a copy
    of the file anywhere; any other relative path is relative to the recipe's folder."""
    if not ref.startswith(PACKAGE_REF):
        model = Path(ref)
        return model if model.is_absolute() else (Path(recipe_path).parent / model).resolve()
    package, _, rel = ref[len(PACKAGE_REF):].partition("/")
    if not package or not rel or ".." in rel.split("/"):
        raise RecipeError(f"recipe {recipe_path}: {ref!r} is not of the form pkg:<package>/<path>")
    try:
        root = resources.files(package)
    except (ModuleNotFoundError, TypeError):  # TypeError: a module, not a package
        raise RecipeError(f"recipe {recipe_path}: {ref!r}: no installed package {package!r}") from None
    return Path(os.fspath(root.joinpath(*rel.split("/"))))
