"""Topic names, partition counts and retention, in one place.

The raw topic is shared: every recipe (the live one and any replay) reads it.
Everything downstream of it lives in a namespace, so a replay under its own
namespace never touches the live pipeline's topics.
"""
from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 3600 * 1000


_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_SIZES = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}


def parse_retention(spec: str) -> tuple[int, int]:
    """``forever`` | ``7d`` / ``12h`` / ``30m`` | ``50GB`` / ``512MB`` -> (retention.ms, retention.bytes)."""
    import re

    s = spec.strip().lower()
    if s in ("forever", "infinite", "-1"):
        return -1, -1
    m = re.fullmatch(r"(\d+)\s*(ms|s|m|h|d|w)", s)
    if m:
        return int(m.group(1)) * _UNITS[m.group(2)], -1
    m = re.fullmatch(r"(\d+)\s*(b|kb|mb|gb|tb)", s)
    if m:
        return -1, int(m.group(1)) * _SIZES[m.group(2)]
    raise ValueError(f"cannot read retention {spec!r}: use forever, a time (7d, 12h) or a size per partition (50GB)")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Topics:
    """All topics of one namespace. ``namespace="live"`` is the always-on pipeline."""

    namespace: str = "live"
    partitions: int = 4
    raw_retention_ms: int = -1  # raw documents are kept forever by default: replay needs them
    raw_retention_bytes: int = -1  # per partition; -1: no size limit
    raw_name: str = "foundry.raw"  # tests and isolated deployments name their own

    @property
    def raw(self) -> str:
        return self.raw_name

    def _ns(self, name: str) -> str:
        return f"foundry.{self.namespace}.{name}"

    @property
    def sequenced(self) -> str:
        """Validated documents in one partition: the one order in which the dedup agent judges
        exact and near duplicates, whatever the partition and worker counts (docs/curation.md)."""
        return self._ns("sequenced")

    @property
    def keyed(self) -> str:  # documents the dedup agent kept, spread by content hash for curation
        return self._ns("keyed")

    def worker_group(self, recipe_version: str) -> str:
        """The stream worker's Faust app id, which is also its consumer group: one per
        namespace and recipe version, so a new recipe reads every topic from the start."""
        return f"foundry-{self.namespace}-{recipe_version}"

    @property
    def tokenized(self) -> str:
        return self._ns("tokenized")

    @property
    def rejections(self) -> str:
        return self._ns("rejections")

    @property
    def shards(self) -> str:
        return self._ns("shards")

    @property
    def dedup_snapshots(self) -> str:
        return self._ns("dedup-snapshots")

    @property
    def values(self) -> str:
        return self._ns("values")

    @property
    def budgets(self) -> str:
        return self._ns("budgets")

    def specs(self) -> list[TopicSpec]:
        week = str(7 * DAY_MS)
        big = {"max.message.bytes": str(64 * 1024 * 1024)}
        return [
            TopicSpec(self.raw, self.partitions, {"retention.ms": str(self.raw_retention_ms),
                                                  "retention.bytes": str(self.raw_retention_bytes), **big}),
            # The sequenced topic is the dedup state's source of truth: the state is
            # rebuilt from a snapshot plus this log, so keep it longer than the
            # snapshot interval (forever by default, like raw). One partition: see its property.
            TopicSpec(self.sequenced, 1, {"retention.ms": "-1", **big}),
            TopicSpec(self.keyed, self.partitions, {"retention.ms": "-1", **big}),
            TopicSpec(self.tokenized, self.partitions, {"retention.ms": week, **big}),
            TopicSpec(self.rejections, self.partitions, {"retention.ms": "-1"}),
            TopicSpec(self.shards, 1, {"retention.ms": "-1"}),
            # Snapshots come in chunks (streams/partition_state.py); smaller segments let
            # compaction drop superseded chunks instead of keeping a 1 GB active segment.
            TopicSpec(self.dedup_snapshots, 1, {"cleanup.policy": "compact", "segment.bytes": str(128 << 20),
                                                **big}),
            TopicSpec(self.values, self.partitions, {"retention.ms": week}),
            TopicSpec(self.budgets, 1, {"cleanup.policy": "compact"}),
        ]
