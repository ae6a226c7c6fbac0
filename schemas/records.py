"""Versioned message records shared by every producer and consumer.

Each record is a dataclass with a schema name and version. On the wire it is
JSON with two envelope fields, ``schema`` and ``v``. Decoding checks both, so a
message from a newer producer or another topic becomes a ``SchemaError`` with a
reason the caller can turn into a ledger row, never a crash.
"""
from __future__ import annotations

import base64
import dataclasses
import enum
import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

T = TypeVar("T", bound="Record")


class Reason(str, enum.Enum):
    """The fixed set of reasons a document can leave the pipeline unsharded."""

    MALFORMED = "malformed"  # not JSON, not an object, fields of the wrong type
    MISSING_TEXT = "missing_text"  # a record without a text field
    INVALID_UTF8 = "invalid_utf8"
    EMPTY = "empty"  # no non-whitespace text
    TOO_LARGE = "too_large"
    UNSUPPORTED_SCHEMA = "unsupported_schema"  # unknown schema name or newer version
    DUPLICATE = "duplicate"  # exact duplicate (byte level, after normalization)
    NEAR_DUPLICATE = "near_duplicate"
    TOXIC = "toxic"
    LOW_DENSITY = "low_density"
    LOW_QUALITY = "low_quality"
    LANGUAGE = "language"
    BUDGET_PRUNED = "budget_pruned"
    FETCH_FAILED = "fetch_failed"
    CORRUPT_RECORD = "corrupt_record"  # a damaged WARC/gzip member


class SchemaError(ValueError):
    """A message that cannot be decoded into the expected record."""

    def __init__(self, reason: Reason, detail: str):
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Record:
    SCHEMA: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": self.SCHEMA, "v": self.VERSION}
        for name in _field_names(type(self)):
            out[name] = getattr(self, name)
        return out

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_dict(cls: type[T], obj: Any) -> T:
        if not isinstance(obj, dict):
            raise SchemaError(Reason.MALFORMED, f"expected a JSON object, got {type(obj).__name__}")
        schema, version = obj.get("schema"), obj.get("v")
        if schema != cls.SCHEMA:
            raise SchemaError(Reason.UNSUPPORTED_SCHEMA, f"expected schema {cls.SCHEMA!r}, got {schema!r}")
        if not isinstance(version, int) or version > cls.VERSION or version < 1:
            raise SchemaError(
                Reason.UNSUPPORTED_SCHEMA,
                f"{cls.SCHEMA} version {version!r} is not supported (this build reads up to v{cls.VERSION})",
            )
        names = _field_names(cls)
        kwargs = {k: v for k, v in obj.items() if k in names}
        try:
            rec = cls(**kwargs)
        except TypeError as exc:  # a required field is missing
            raise SchemaError(Reason.MALFORMED, f"{cls.SCHEMA}: {exc}") from None
        rec._check()
        return rec

    @classmethod
    def decode(cls: type[T], data: bytes | None) -> T:
        if data is None:
            raise SchemaError(Reason.MALFORMED, "empty message (tombstone)")
        try:
            obj = json.loads(data)
        except UnicodeDecodeError as exc:
            raise SchemaError(Reason.INVALID_UTF8, str(exc)) from None
        except ValueError as exc:
            raise SchemaError(Reason.MALFORMED, f"not JSON: {exc}") from None
        except RecursionError:  # any producer can write to a topic: a message nested too deeply
            raise SchemaError(Reason.MALFORMED, "JSON nested too deeply") from None
        return cls.from_dict(obj)

    def _check(self) -> None:
        """Type checks for the fields a consumer relies on."""
        for (schema, name), want in _FIELD_TYPES.items():
            if schema != self.SCHEMA:
                continue
            val = getattr(self, name)
            if val is not None and not isinstance(val, want):
                raise SchemaError(Reason.MALFORMED, f"{self.SCHEMA}.{name} must be {want}, got {type(val).__name__}")


_FIELD_TYPES: dict[tuple[str, str], Any] = {}
_NAMES: dict[type, frozenset[str] | tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    # dataclasses.fields() is slow enough to show in profiles of the hot path.
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _types(schema: str, **kinds: Any) -> None:
    for name, kind in kinds.items():
        _FIELD_TYPES[(schema, name)] = kind


@dataclass
class RawDocument(Record):
    """A document as a source saw it. ``defect`` is set by a source that could
    not read the input (invalid JSON, invalid UTF-8, no text field): the
    document still travels so that the pipeline records it in the ledger."""

    SCHEMA: ClassVar[str] = "raw_document"
    VERSION: ClassVar[int] = 1

    id: str
    text: str
    source: str
    url: str | None = None
    lang: str | None = None
    licence: str | None = None
    fetched_at: float | None = None
    defect: str | None = None
    defect_detail: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


_types("raw_document", id=str, text=str, source=str, url=str, lang=str, licence=str,
       fetched_at=(int, float), defect=str, defect_detail=str, meta=dict)


@dataclass
class CuratedDocument(Record):
    """A document that passed the stages so far, with its scores and, after the
    tokenizer, its token ids (base64 of little-endian uint32 on the wire)."""

    SCHEMA: ClassVar[str] = "curated_document"
    VERSION: ClassVar[int] = 1

    id: str
    text: str
    source: str
    content_hash: str
    recipe_version: str
    url: str | None = None
    lang: str | None = None
    licence: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    tokenizer_version: str | None = None
    tokens_b64: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens(self) -> np.ndarray | None:
        if self.tokens_b64 is None:
            return None
        return np.frombuffer(base64.b64decode(self.tokens_b64), dtype="<u4")

    def set_tokens(self, ids: Any, tokenizer_version: str) -> None:
        arr = np.asarray(ids, dtype="<u4")
        self.tokens_b64 = base64.b64encode(arr.tobytes()).decode("ascii")
        self.tokenizer_version = tokenizer_version

    @property
    def n_tokens(self) -> int:
        return 0 if self.tokens_b64 is None else len(base64.b64decode(self.tokens_b64)) // 4

    def _check(self) -> None:
        super()._check()
        # The hash names the document's files inside a shard (``<hash>.tokens.npy``): a message
        # with anything but hex there ("../x") must not reach a tar member name.
        if not _HEX_HASH.fullmatch(self.content_hash):
            raise SchemaError(Reason.MALFORMED, f"{self.SCHEMA}.content_hash must be 16-64 lowercase hex digits")


_HEX_HASH = re.compile(r"[0-9a-f]{16,64}")
_types("curated_document", id=str, text=str, source=str, content_hash=str, recipe_version=str,
       scores=dict, tokenizer_version=str, tokens_b64=str, meta=dict)


@dataclass
class Rejection(Record):
    """Why a document was not sharded. Exactly one per rejected input id."""

    SCHEMA: ClassVar[str] = "rejection"
    VERSION: ClassVar[int] = 1

    id: str
    reason: str
    stage: str
    recipe_version: str
    source: str | None = None
    url: str | None = None
    detail: str | None = None
    duplicate_of: str | None = None
    score: float | None = None
    content_hash: str | None = None
    n_bytes: int | None = None
    budget_version: int | None = None
    raw_ref: str | None = None  # the raw message (schemas/raw_ref.py): tells two publications of one id apart

    def _check(self) -> None:
        super()._check()
        try:
            Reason(self.reason)
        except ValueError:
            raise SchemaError(Reason.MALFORMED, f"unknown rejection reason {self.reason!r}") from None


_types("rejection", id=str, reason=str, stage=str, recipe_version=str, n_bytes=int)


@dataclass
class ShardManifest(Record):
    """Published on the shards topic once a shard is durable on disk."""

    SCHEMA: ClassVar[str] = "shard_manifest"
    VERSION: ClassVar[int] = 1

    shard: str  # file name, e.g. p003-000000001234.tar
    path: str  # absolute path of the tar
    recipe_version: str
    tokenizer_version: str
    partition: int
    first_seq: int  # documents this partition sharded before this shard (the number in its name)
    end_offset: int  # the tokenized topic's offset the partition resumes from after this shard
    n_docs: int
    n_tokens: int
    n_bytes: int
    sha256: str
    token_dtype: str
    vocab_size: int
    manifest_path: str  # the Parquet part listing this shard's documents


_types("shard_manifest", shard=str, path=str, partition=int, n_docs=int, n_tokens=int)


@dataclass
class ValueScore(Record):
    """The trainer's judgement of one document (or an aggregate bucket)."""

    SCHEMA: ClassVar[str] = "value_score"
    VERSION: ClassVar[int] = 1

    doc_id: str
    source: str
    value: float
    n_tokens: int
    trainer_step: int
    model_version: str
    method: str
    bucket: dict[str, str] = field(default_factory=dict)  # e.g. {"lang": "zh"}
    shard: str | None = None


_types("value_score", doc_id=str, source=str, value=(int, float), n_tokens=int, trainer_step=int)


@dataclass
class BudgetUpdate(Record):
    """Token budgets per source/bucket for the next window (compacted topic).

    v2 adds ``effective_at`` (epoch seconds): the update applies to documents ingested at or
    after it, and the agent sets it ahead of the time it publishes, so that every worker has the
    update before any document it applies to (docs/exactly-once.md). A v1 update has none."""

    SCHEMA: ClassVar[str] = "budget_update"
    VERSION: ClassVar[int] = 2

    budget_version: int
    window_tokens: int
    budgets: dict[str, int]  # key "source" or "source|lang=zh" -> tokens allowed per window
    method: str
    weights: dict[str, float] = field(default_factory=dict)
    flagged: list[str] = field(default_factory=list)
    effective_at: float | None = None

    def _check(self) -> None:
        super()._check()
        if self.effective_at is not None and (isinstance(self.effective_at, bool)
                                              or not isinstance(self.effective_at, (int, float))):
            raise SchemaError(Reason.MALFORMED, f"{self.SCHEMA}.effective_at must be a number")


_types("budget_update", budget_version=int, window_tokens=int, budgets=dict)
