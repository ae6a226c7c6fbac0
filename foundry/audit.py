"""``foundry audit``: check that every raw document ended in exactly one shard or one ledger row.

A raw document is named by its raw ref (``schemas/raw_ref.py``: topic, its
incarnation, partition, offset; a ref of older outputs without the topic means
the audited raw topic; rows of another topic or of an earlier incarnation of
the audited one are outside the audit). The audit:

1. reads the ``raw_ref`` column of every manifest and ledger part, in batches,
   and counts, per raw partition, how many manifest rows and how many ledger
   rows name each offset of the audited range;
2. reads the raw range (topic or archive) once, in offset order, and classifies
   each raw message by its two counts: missing (0 and 0), sharded twice,
   in the ledger twice, or both sharded and rejected;
3. reports rows that name an offset of the range with no raw message behind it.

The counts live in per-partition arrays indexed by ``offset - start``,
memory-mapped from a temporary folder: 5 bytes per raw offset of the range, on
disk, touched in order, so the process's own memory stays flat (a million
documents: 5 MB of counters) whatever the range length, and no set of refs
or ids is ever held.
"""
from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from schemas.raw_ref import parse_raw_ref

PROBLEMS = ("missing", "sharded_twice", "ledgered_twice", "sharded_and_rejected", "no_raw_message")
MAX_EXAMPLES = 10
_BATCH = 65_536


@dataclass
class AuditReport:
    raw_topic: str
    range: dict[int, list[int]]  # partition -> [start, end)
    raw_checked: int = 0
    manifest_rows: int = 0
    ledger_rows: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {k: 0 for k in PROBLEMS})
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)  # problem -> source -> n
    examples: dict[str, list[str]] = field(default_factory=dict)  # problem -> refs (and ids)
    outside_range: int = 0  # rows naming another raw topic or an offset outside the range: not judged here
    unreadable_refs: int = 0  # rows without a readable raw_ref (their raw document then shows as missing)

    @property
    def ok(self) -> bool:
        return not any(self.counts.values())

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def text(self) -> str:
        lines = [f"audited {self.raw_checked} raw messages of {self.raw_topic} against "
                 f"{self.manifest_rows} manifest rows and {self.ledger_rows} ledger rows"]
        for k in PROBLEMS:
            n = self.counts[k]
            lines.append(f"  {k:22s} {n}")
            if n:
                srcs = ", ".join(f"{s}: {c}" for s, c in sorted(self.by_source.get(k, {}).items()))
                lines.append(f"    by source: {srcs}")
                lines += [f"    e.g. {e}" for e in self.examples.get(k, [])]
        if self.outside_range:
            lines.append(f"  (rows outside the audited range, not judged: {self.outside_range})")
        if self.unreadable_refs:
            lines.append(f"  (rows without a readable raw_ref: {self.unreadable_refs})")
        lines.append("OK: every raw document is in exactly one shard or one ledger row" if self.ok
                     else "FAILED: see the counts above")
        return "\n".join(lines)


def locate(ref: str | None, raw_topic: str, incarnation: str | None) -> tuple[int, int] | str:
    """(partition, offset) of a row's raw ref in the audited topic, ``"other"`` for a ref to
    another topic or to another incarnation of it (deleted and created again), ``"bad"`` for none."""
    r = parse_raw_ref(ref)
    if r is None:
        return "bad"
    if r.topic is not None and (r.topic != raw_topic or (
            incarnation and r.incarnation and r.incarnation != incarnation)):
        return "other"
    return r.partition, r.offset


class OffsetCounters:
    """Per raw partition: manifest rows, ledger rows and raw presence per offset of ``[start, end)``."""

    def __init__(self, ranges: dict[int, tuple[int, int]], folder: Path):
        self.ranges = ranges
        self.arrays: dict[int, dict[str, np.ndarray]] = {}
        for p, (lo, hi) in ranges.items():
            n = max(hi - lo, 1)
            self.arrays[p] = {
                kind: np.memmap(folder / f"p{p}-{kind}.bin", dtype=dtype, mode="w+", shape=(n,))
                for kind, dtype in (("shard", np.uint16), ("ledger", np.uint16), ("raw", np.uint8))}

    def add(self, kind: str, partitions: np.ndarray, offsets: np.ndarray) -> int:
        """Count rows at (partition, offset); returns how many fell outside the range."""
        outside = 0
        for p in np.unique(partitions):
            offs = offsets[partitions == p]
            rng = self.ranges.get(int(p))
            if rng is None:
                outside += len(offs)
                continue
            inside = (offs >= rng[0]) & (offs < rng[1])
            outside += int((~inside).sum())
            np.add.at(self.arrays[int(p)][kind], offs[inside] - rng[0], 1)
        return outside


def read_outcome_refs(folder: Path, raw_topic: str, incarnation: str | None = None
                      ) -> Iterator[tuple[np.ndarray, np.ndarray, int, int, int]]:
    """(partitions, offsets, rows, rows of another topic, unreadable rows) per batch of a folder's parts."""
    for part in sorted(folder.glob("*.parquet")):
        pf = pq.ParquetFile(part)
        for batch in pf.iter_batches(batch_size=_BATCH, columns=["raw_ref"]):
            parts, offs, other, bad = [], [], 0, 0
            for ref in batch.column(0).to_pylist():
                got = locate(ref, raw_topic, incarnation)
                if got == "bad":
                    bad += 1
                elif got == "other":
                    other += 1
                else:
                    parts.append(got[0])
                    offs.append(got[1])
            yield (np.asarray(parts, dtype=np.int64), np.asarray(offs, dtype=np.int64), batch.num_rows, other, bad)


@dataclass
class RawBatch:
    """A batch of raw messages of one partition, in offset order."""

    partition: int
    offsets: np.ndarray
    sources: list[str]
    ids: list[str | None]


class Auditor:
    def __init__(self, out_dir: str | Path, raw_topic: str, ranges: dict[int, tuple[int, int]],
                 work_dir: str | Path | None = None, incarnation: str | None = None):
        self.out_dir = Path(out_dir)
        for sub in ("manifest", "ledger"):
            if not (self.out_dir / sub).is_dir():
                raise FileNotFoundError(f"{self.out_dir}: not an output folder (no {sub}/ inside)")
        self.raw_topic = raw_topic
        self.incarnation = incarnation
        self.ranges = ranges
        self._tmp = tempfile.TemporaryDirectory(prefix="foundry-audit-", dir=work_dir)
        self.counters = OffsetCounters(ranges, Path(self._tmp.name))
        self.report = AuditReport(raw_topic, {p: list(r) for p, r in sorted(ranges.items())})

    def count_outcomes(self, read=read_outcome_refs) -> None:
        """``read(folder, raw_topic, incarnation)`` yields batches as ``read_outcome_refs`` does."""
        for kind, sub, attr in (("shard", "manifest", "manifest_rows"), ("ledger", "ledger", "ledger_rows")):
            for parts, offs, rows, other, bad in read(self.out_dir / sub, self.raw_topic, self.incarnation):
                setattr(self.report, attr, getattr(self.report, attr) + rows)
                self.report.outside_range += other + self.counters.add(kind, parts, offs)
                self.report.unreadable_refs += bad

    def _flag(self, problem: str, mask: np.ndarray, batch: RawBatch) -> None:
        idx = np.flatnonzero(mask)
        if not len(idx):
            return
        self.report.counts[problem] += len(idx)
        srcs = self.report.by_source.setdefault(problem, {})
        for s, n in Counter(batch.sources[i] for i in idx).items():
            srcs[s] = srcs.get(s, 0) + n
        ex = self.report.examples.setdefault(problem, [])
        for i in idx[: MAX_EXAMPLES - len(ex)]:
            ex.append(f"{self.raw_topic}:{batch.partition}:{int(batch.offsets[i])} id={batch.ids[i]!r}")

    def check_raw(self, batches: Iterable[RawBatch]) -> None:
        for b in batches:
            rng = self.ranges.get(b.partition)
            if rng is None:
                continue
            keep = (b.offsets >= rng[0]) & (b.offsets < rng[1])
            if not keep.all():
                sel = np.flatnonzero(keep)
                b = RawBatch(b.partition, b.offsets[sel], [b.sources[i] for i in sel], [b.ids[i] for i in sel])
            arrs = self.counters.arrays[b.partition]
            at = b.offsets - rng[0]
            arrs["raw"][at] = 1
            s, led = arrs["shard"][at], arrs["ledger"][at]
            self.report.raw_checked += len(at)
            self._flag("missing", (s == 0) & (led == 0), b)
            self._flag("sharded_twice", s > 1, b)
            self._flag("ledgered_twice", led > 1, b)
            self._flag("sharded_and_rejected", (s > 0) & (led > 0), b)

    def finish(self) -> AuditReport:
        """Rows that name an offset of the range where no raw message was read."""
        window = 1 << 20
        for p, arrs in self.counters.arrays.items():
            lo, hi = self.ranges[p]
            for i in range(0, hi - lo, window):
                sl = slice(i, min(i + window, hi - lo))
                orphan = (arrs["raw"][sl] == 0) & ((arrs["shard"][sl] > 0) | (arrs["ledger"][sl] > 0))
                idx = np.flatnonzero(orphan)
                if len(idx):
                    self.report.counts["no_raw_message"] += len(idx)
                    srcs = self.report.by_source.setdefault("no_raw_message", {})
                    srcs["?"] = srcs.get("?", 0) + len(idx)
                    ex = self.report.examples.setdefault("no_raw_message", [])
                    ex += [f"{self.raw_topic}:{p}:{lo + int(j) + i}" for j in idx[: MAX_EXAMPLES - len(ex)]]
        self.counters = None  # type: ignore[assignment]  # unmaps before the folder goes
        self._tmp.cleanup()
        return self.report


# --- raw readers ---------------------------------------------------------

def _source_and_id(value: bytes | None) -> tuple[str, str | None]:
    try:
        obj = json.loads(value) if value is not None else None
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        return "_undecodable", None
    src, doc_id = obj.get("source"), obj.get("id")
    return (src if isinstance(src, str) else "_undecodable"), (doc_id if isinstance(doc_id, str) else None)


def topic_batches(bootstrap: str, topic: str, start: dict[int, int], end: dict[int, int],
                  size: int = 5000) -> Iterator[RawBatch]:
    """The raw range, partition by partition, in batches. Fetches and the prefetch queue are
    capped at 8 and 16 MB (compressed; the broker still returns a larger single message):
    with the 64 MB of the pipeline's readers one fetch of well-compressed text decompressed
    to hundreds of MB, so the audit's peak memory followed the partition's size."""
    from iolayer.ranges import range_consumer, read_range

    consumer = range_consumer(bootstrap, "foundry-audit", **{
        "queued.max.messages.kbytes": 16 << 10, "fetch.max.bytes": 8 << 20, "fetch.message.max.bytes": 8 << 20})
    try:
        for p in sorted(end):
            offs: list[int] = []
            srcs: list[str] = []
            ids: list[str | None] = []
            for m in read_range(consumer, topic, p, start.get(p, 0), end[p]):
                src, doc_id = _source_and_id(m.value())
                offs.append(m.offset())
                srcs.append(src)
                ids.append(doc_id)
                if len(offs) >= size:
                    yield RawBatch(p, np.asarray(offs, dtype=np.int64), srcs, ids)
                    offs, srcs, ids = [], [], []
            if offs:
                yield RawBatch(p, np.asarray(offs, dtype=np.int64), srcs, ids)
    finally:
        consumer.close()


def archive_parts(archive: str | Path) -> list[Path]:
    files = sorted(Path(archive).rglob("p*.parquet"))
    if not files:
        raise FileNotFoundError(f"no archive parts under {archive}")
    return files


def archive_ranges(archive: str | Path) -> dict[int, tuple[int, int]]:
    """[lowest, highest + 1) offset per partition of the archive (one pass over two columns)."""
    lo: dict[int, int] = {}
    hi: dict[int, int] = {}
    for f in archive_parts(archive):
        for b in pq.ParquetFile(f).iter_batches(batch_size=_BATCH, columns=["partition", "offset"]):
            parts, offs = b.column(0).to_numpy(), b.column(1).to_numpy()
            for p in np.unique(parts):
                o = offs[parts == p]
                lo[int(p)] = min(lo.get(int(p), 1 << 62), int(o.min()))
                hi[int(p)] = max(hi.get(int(p), -1), int(o.max()) + 1)
    return {p: (lo[p], hi[p]) for p in lo}


def archive_batches(archive: str | Path) -> Iterator[RawBatch]:
    for f in archive_parts(archive):
        for b in pq.ParquetFile(f).iter_batches(batch_size=_BATCH, columns=["partition", "offset", "source", "id"]):
            parts, offs = b.column(0).to_numpy(), b.column(1).to_numpy()
            srcs, ids = b.column(2).to_pylist(), b.column(3).to_pylist()
            for p in np.unique(parts):
                sel = np.flatnonzero(parts == p)
                yield RawBatch(int(p), offs[sel], [srcs[i] or "_undecodable" for i in sel], [ids[i] for i in sel])


def _offsets(spec: str) -> dict[int, int]:
    out = {}
    for part in spec.split(","):
        p, _, off = part.partition(":")
        if not (p.strip().isdigit() and off.strip().isdigit()):
            raise ValueError(f"cannot read {spec!r}: with an archive use beginning, end or P:OFFSET,...")
        out[int(p)] = int(off)
    return out


def audit_output(out_dir: str | Path, *, bootstrap: str | None = None, raw_topic: str = "foundry.raw",
                 start: str | None = None, until: str | None = None, archive: str | Path | None = None,
                 work_dir: str | Path | None = None) -> AuditReport:
    """Audit ``out_dir`` against the raw topic range (or the archive) ``[start, until)``;
    the bounds read as replay's (``beginning``, ``end``, ISO time, ``P:OFFSET,...``;
    offsets only with an archive)."""
    incarnation = None
    if archive is not None:
        ranges = archive_ranges(archive)
        lo = _offsets(start) if start not in (None, "beginning") else {}
        hi = _offsets(until) if until not in (None, "end") else {}
        ranges = {p: (max(a, lo.get(p, a)), min(b, hi.get(p, b))) for p, (a, b) in ranges.items()}
        batches: Iterable[RawBatch] = archive_batches(archive)
    else:
        if bootstrap is None:
            raise ValueError("auditing the raw topic needs a bootstrap server (or pass an archive)")
        from streams.raw_range import parse_bound
        from streams.topic_identity import topic_incarnation
        from iolayer.ranges import watermarks

        incarnation = topic_incarnation(bootstrap, raw_topic)

        s = parse_bound(start, bootstrap, raw_topic, end=False)
        e = parse_bound(until, bootstrap, raw_topic, end=True)
        # Only what the topic retains can be checked; rows for aged-out offsets count as outside.
        low = {p: lo for p, (lo, _) in watermarks(bootstrap, raw_topic).items()}
        ranges = {p: (max(s.get(p, 0), low.get(p, 0)), e[p]) for p in e}
        batches = topic_batches(bootstrap, raw_topic, {p: r[0] for p, r in ranges.items()},
                                {p: r[1] for p, r in ranges.items()})
    ranges = {p: (a, max(a, b)) for p, (a, b) in ranges.items()}
    auditor = Auditor(out_dir, raw_topic, ranges, work_dir, incarnation)
    auditor.count_outcomes()
    auditor.check_raw(batches)
    return auditor.finish()


def audit_ids(out_dir: str | Path, expected_ids: Iterable[str], source: str = "expected") -> AuditReport:
    """The same check keyed by document id instead of raw ref, for a corpus whose ids are
    unique and known (the tests' corpora): each expected id is one pseudo raw offset, and a
    row whose id is not expected counts as ``no_raw_message``."""
    index = {doc_id: i for i, doc_id in enumerate(dict.fromkeys(expected_ids))}
    unknown = len(index)  # one offset past the expected ones collects the rows of unknown ids

    def read(folder: Path, _topic: str, _incarnation):
        col = "doc_id" if folder.name == "manifest" else "id"
        for part in sorted(folder.glob("*.parquet")):
            for b in pq.ParquetFile(part).iter_batches(batch_size=_BATCH, columns=[col]):
                offs = np.asarray([index.get(i, unknown) for i in b.column(0).to_pylist()], dtype=np.int64)
                yield np.zeros(len(offs), dtype=np.int64), offs, b.num_rows, 0, 0

    auditor = Auditor(out_dir, "ids", {0: (0, unknown + 1)})
    auditor.count_outcomes(read)
    ids = list(index)
    auditor.check_raw([RawBatch(0, np.arange(len(ids), dtype=np.int64), [source] * len(ids), ids)])
    return auditor.finish()
