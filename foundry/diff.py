"""Compare what two recipes kept and dropped, from their manifests and ledgers."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq


def _load(out_dir: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    kept: dict[str, dict] = {}
    for part in sorted((out_dir / "manifest").glob("*.parquet")):
        for r in pq.read_table(part, columns=["doc_id", "source", "lang", "n_tokens"]).to_pylist():
            kept[r["doc_id"]] = r
    dropped: dict[str, dict] = {}
    for part in sorted((out_dir / "ledger").glob("*.parquet")):
        for r in pq.read_table(part, columns=["id", "source", "reason", "n_bytes"]).to_pylist():
            dropped[r["id"]] = r
    return kept, dropped


def diff_outputs(a: str | Path, b: str | Path, sample: int = 10) -> dict:
    ka, da = _load(Path(a))
    kb, db = _load(Path(b))

    def by(rows: dict[str, dict], field: str, weight: str | None = None) -> dict:
        c: Counter = Counter()
        for r in rows.values():
            c[r.get(field) or "?"] += (r.get(weight) or 0) if weight else 1
        return dict(sorted(c.items()))

    newly_dropped = sorted(set(ka) & set(db))
    newly_kept = sorted(set(da) & set(kb))
    return {
        "a": str(a), "b": str(b),
        "kept_docs": {"a": len(ka), "b": len(kb)},
        "kept_tokens": {"a": sum(r["n_tokens"] for r in ka.values()), "b": sum(r["n_tokens"] for r in kb.values())},
        "dropped_docs": {"a": len(da), "b": len(db)},
        "kept_by_source": {"a": by(ka, "source"), "b": by(kb, "source")},
        "kept_tokens_by_source": {"a": by(ka, "source", "n_tokens"), "b": by(kb, "source", "n_tokens")},
        "kept_by_lang": {"a": by(ka, "lang"), "b": by(kb, "lang")},
        "dropped_by_reason": {"a": by(da, "reason"), "b": by(db, "reason")},
        "dropped_by_source": {"a": by(da, "source"), "b": by(db, "source")},
        "moved": {
            "kept_in_a_dropped_in_b": len(newly_dropped),
            "dropped_in_a_kept_in_b": len(newly_kept),
            "sample_kept_to_dropped": [{"id": i, "reason_in_b": db[i]["reason"]} for i in newly_dropped[:sample]],
            "sample_dropped_to_kept": [{"id": i, "reason_in_a": da[i]["reason"]} for i in newly_kept[:sample]],
        },
    }
