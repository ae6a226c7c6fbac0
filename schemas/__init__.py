"""Message contracts: every stage encodes and decodes through these."""
from schemas.records import (
    BudgetUpdate,
    CuratedDocument,
    RawDocument,
    Reason,
    Record,
    Rejection,
    SchemaError,
    ShardManifest,
    ValueScore,
)
from schemas.topics import TopicSpec, Topics

__all__ = [
    "BudgetUpdate", "CuratedDocument", "RawDocument", "Reason", "Record", "Rejection",
    "SchemaError", "ShardManifest", "ValueScore", "TopicSpec", "Topics",
]
