"""What budget pruning removed, by source, language and length: so a reviewer can spot a starved capability.

Input: kept documents (source, lang, bytes) and ``budget_pruned`` rejections (their ``source``,
``n_bytes`` and the ``lang=`` in their detail). From an output folder, the kept documents are
the Parquet manifest and the rejections are the ledger (:func:`from_output_dir`).

Output rows per group (``by`` = source, lang, length class by bytes): documents and bytes in,
pruned, and the pruned share; groups whose pruned share reaches ``starve_share`` (with at
least ``min_docs`` documents) are marked ``STARVED?``: a whole language or length class going
away is what a floor is there to prevent, so it deserves a look even when it is junk.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BYTE_CLASSES: tuple[tuple[int, str], ...] = ((256, "<256B"), (1024, "<1KB"), (4096, "<4KB"), (16384, "<16KB"))


def byte_class(n_bytes: int | None) -> str:
    if n_bytes is None:
        return "?"
    for edge, name in BYTE_CLASSES:
        if n_bytes < edge:
            return name
    return ">=16KB"


def detail_fields(detail: str | None) -> dict[str, str]:
    """``"why=over_budget keep=0.1 lang=de len=2 key=web"`` -> dict (the stage's detail format)."""
    out: dict[str, str] = {}
    for part in (detail or "").split(" "):
        k, sep, v = part.partition("=")
        if sep:
            out[k] = v
    return out


@dataclass
class Item:
    source: str
    lang: str
    n_bytes: int
    pruned: bool
    why: str = ""


def items_from(kept: Iterable[dict[str, Any]], rejections: Iterable[Any]) -> list[Item]:
    """``kept``: dicts with source, lang, n_bytes; ``rejections``: Rejection objects or ledger dicts."""
    out = [Item(str(k.get("source") or "unknown"), str(k.get("lang") or "unk").lower(), int(k.get("n_bytes") or 0),
                False) for k in kept]
    for r in rejections:
        get = r.get if isinstance(r, dict) else (lambda name, _r=r: getattr(_r, name, None))
        if get("reason") != "budget_pruned":
            continue
        f = detail_fields(get("detail"))
        out.append(Item(str(get("source") or "unknown"), f.get("lang", "unk"), int(get("n_bytes") or 0), True,
                        f.get("why", "")))
    return out


def removal_report(items: Iterable[Item], by: tuple[str, ...] = ("source", "lang", "length"),
                   starve_share: float = 0.9, min_docs: int = 20) -> dict[str, list[dict[str, Any]]]:
    """For each of ``by``: rows {group, docs, pruned_docs, bytes, pruned_bytes, pruned_share, starved}."""
    items = list(items)
    out: dict[str, list[dict[str, Any]]] = {}
    for dim in by:
        acc: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for it in items:
            g = it.source if dim == "source" else it.lang if dim == "lang" else byte_class(it.n_bytes)
            a = acc[g]
            a[0] += 1
            a[2] += it.n_bytes
            if it.pruned:
                a[1] += 1
                a[3] += it.n_bytes
        rows = []
        for g, (docs, pdocs, nbytes, pbytes) in sorted(acc.items(), key=lambda kv: -kv[1][2]):
            share = pbytes / nbytes if nbytes else 0.0
            rows.append({"group": g, "docs": docs, "pruned_docs": pdocs, "bytes": nbytes, "pruned_bytes": pbytes,
                         "pruned_share": share, "starved": docs >= min_docs and share >= starve_share})
        out[dim] = rows
    return out


def format_report(report: dict[str, list[dict[str, Any]]], max_rows: int = 20) -> str:
    lines = []
    for dim, rows in report.items():
        lines.append(f"pruned by {dim}:")
        lines.append(f"  {'group':<40} {'docs':>8} {'pruned':>8} {'MB in':>9} {'pruned %':>9}")
        for r in rows[:max_rows]:
            mark = "  STARVED?" if r["starved"] else ""
            lines.append(f"  {r['group'][:40]:<40} {r['docs']:>8} {r['pruned_docs']:>8} {r['bytes'] / 1e6:>9.2f} "
                         f"{100 * r['pruned_share']:>8.1f}%{mark}")
        if len(rows) > max_rows:
            lines.append(f"  ... {len(rows) - max_rows} more")
    return "\n".join(lines)


def from_output_dir(out_dir: str | Path) -> list[Item]:
    """Kept documents from ``manifest/*.parquet``, pruned ones from ``ledger/*.parquet``."""
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    kept: list[dict[str, Any]] = []
    for part in sorted((out_dir / "manifest").glob("*.parquet")):
        kept += pq.read_table(part, columns=["source", "lang", "n_bytes"]).to_pylist()
    rejections: list[dict[str, Any]] = []
    for part in sorted((out_dir / "ledger").glob("*.parquet")):
        t = pq.read_table(part)
        cols = [c for c in ("reason", "source", "n_bytes", "detail") if c in t.column_names]
        rejections += t.select(cols).to_pylist()
    return items_from(kept, rejections)
