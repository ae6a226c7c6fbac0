"""A range of the raw topic, and reading it in a canonical order.

A replay reads raw messages partition by partition, in offset order, from the
topic or from the Parquet archive; either way the same range yields the same
sequence, which is what makes a replay reproducible.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from iolayer.ranges import offsets_for_time, range_consumer, read_range, watermarks


class RangeAgedOut(RuntimeError):
    pass


@dataclass(frozen=True)
class RawMessage:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


def parse_bound(spec: str | None, bootstrap: str, topic: str, *, end: bool) -> dict[int, int]:
    """``beginning`` | ``end`` | ISO timestamp | ``P:OFFSET,P:OFFSET`` -> offset per partition.
    ``None`` means the beginning for a start and the current end for an end."""
    marks = watermarks(bootstrap, topic)
    if spec is None:
        spec = "end" if end else "beginning"
    if spec == "beginning":
        return {p: 0 for p in marks}  # 0, not the low mark: an aged-out start must be reported
    if spec == "end":
        return {p: high for p, (_, high) in marks.items()}
    if ":" in spec and all(part.split(":")[0].isdigit() for part in spec.split(",")) and "T" not in spec:
        out = {p: (high if end else 0) for p, (_, high) in marks.items()}
        for part in spec.split(","):
            p, off = part.split(":")
            out[int(p)] = int(off)
        return out
    try:
        when = dt.datetime.fromisoformat(spec)
    except ValueError:
        raise ValueError(f"cannot read {spec!r}: use beginning, end, an ISO time or P:OFFSET,...") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    ms = int(when.timestamp() * 1000)
    out = {}
    for p, off in offsets_for_time(bootstrap, topic, list(marks), ms).items():
        # -1: no message at or after that time: the range ends (or starts) at the current end.
        out[p] = off if off >= 0 else marks[p][1]
    if not end:
        for p, (low, _) in marks.items():
            if low > 0 and out[p] == low and _first_timestamp(bootstrap, topic, p, low) > ms:
                # The first retained message is newer than the start: older ones were deleted.
                raise RangeAgedOut(f"{topic}[{p}]: messages from {spec} have aged out of retention "
                                   f"(the topic keeps offsets {low}+); replay from the archive instead")
    return out


def _first_timestamp(bootstrap: str, topic: str, partition: int, offset: int) -> int:
    for m in read_topic_range(bootstrap, topic, {partition: offset}, {partition: offset + 1}):
        return m.timestamp_ms
    return 0


def check_retained(bootstrap: str, topic: str, start: dict[int, int]) -> None:
    for p, (low, _) in watermarks(bootstrap, topic).items():
        if start.get(p, 0) < low:
            raise RangeAgedOut(
                f"{topic}[{p}]: the range starts at offset {start[p]} but the topic only retains offsets from "
                f"{low} on (older ones aged out of retention); replay from the archive (--source archive)")


def read_topic_range(bootstrap: str, topic: str, start: dict[int, int], end: dict[int, int]) -> Iterator[RawMessage]:
    c = range_consumer(bootstrap, "foundry-replay-reader")
    try:
        for p in sorted(end):
            for m in read_range(c, topic, p, start.get(p, 0), end[p]):
                yield RawMessage(p, m.offset(), m.timestamp()[1], m.key(), m.value())
    finally:
        c.close()


def read_archive_range(archive: str | Path, start: dict[int, int], end: dict[int, int] | None) -> Iterator[RawMessage]:
    """Raw messages of the Parquet archive in [start, end) per partition, in canonical order."""
    import pyarrow.dataset as ds

    files = sorted(Path(archive).rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no archive parts under {archive}")
    table = ds.dataset([str(f) for f in files], format="parquet").to_table(
        columns=["partition", "offset", "timestamp_ms", "key", "value"])
    rows = sorted(zip(*(table.column(c).to_pylist() for c in
                        ("partition", "offset", "timestamp_ms", "key", "value"))), key=lambda r: (r[0], r[1]))
    for p, off, ts, key, value in rows:
        if off < start.get(p, 0) or (end is not None and off >= end.get(p, 1 << 62)):
            continue
        yield RawMessage(p, off, ts, key, value)
