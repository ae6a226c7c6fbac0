"""Spill the raw topic to Parquet, partitioned by date and source.

``archive/date=YYYY-MM-DD/source=NAME/p003-000000001234.parquet`` holds raw
messages (partition, offset, timestamp, key, value bytes exactly as on the
topic), so a replay from the archive sees what a replay from the topic would.
Resumable: each run continues after the highest offset already archived.
"""
from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from consumers.partitioned_sink import atomic_write
from schemas import RawDocument, SchemaError
from streams.raw_range import read_topic_range
from iolayer.ranges import watermarks

_SCHEMA = pa.schema([("partition", pa.int32()), ("offset", pa.int64()), ("timestamp_ms", pa.int64()),
                     ("key", pa.binary()), ("value", pa.binary()), ("id", pa.string()), ("source", pa.string())])
_NAME = re.compile(r"^p(\d{3})-(\d{12})\.parquet$")


def archived_until(archive: Path) -> dict[int, int]:
    """Next offset to archive per partition, from the part files already written."""
    out: dict[int, int] = {}
    for f in archive.rglob("*.parquet"):
        if _NAME.match(f.name):
            offs = pq.read_table(f, columns=["partition", "offset"]).to_pydict()
            for p, o in zip(offs["partition"], offs["offset"]):
                out[p] = max(out.get(p, 0), o + 1)
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80] or "_"


def archive_topic(bootstrap: str, topic: str, archive: str | Path, *, batch: int = 50_000) -> int:
    """Archive everything not yet archived; returns the number of messages written."""
    archive = Path(archive)
    archive.mkdir(parents=True, exist_ok=True)
    start = archived_until(archive)
    marks = watermarks(bootstrap, topic)
    for p, (low, _) in marks.items():
        if start.get(p, 0) < low:
            start[p] = low  # older messages aged out before they were archived
    end = {p: high for p, (_, high) in marks.items()}
    groups: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
    n = 0

    def flush() -> None:
        for (day, source, part), rows in groups.items():
            folder = archive / f"date={day}" / f"source={_safe(source)}"
            folder.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pylist(rows, schema=_SCHEMA)
            atomic_write(folder / f"p{part:03d}-{rows[0]['offset']:012d}.parquet",
                         lambda tmp, t=table: pq.write_table(t, tmp))
        groups.clear()

    pending = 0
    for m in read_topic_range(bootstrap, topic, start, end):
        try:
            doc = RawDocument.decode(m.value)
            doc_id, source = doc.id, doc.source
        except SchemaError:
            doc_id, source = None, "_undecodable"
        day = dt.datetime.fromtimestamp(max(m.timestamp_ms, 0) / 1000, dt.timezone.utc).strftime("%Y-%m-%d")
        groups[(day, source, m.partition)].append({
            "partition": m.partition, "offset": m.offset, "timestamp_ms": m.timestamp_ms,
            "key": m.key, "value": m.value, "id": doc_id, "source": source})
        n += 1
        pending += 1
        if pending >= batch:
            flush()
            pending = 0
    flush()
    return n
