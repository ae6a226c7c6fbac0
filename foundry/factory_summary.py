"""The loop's figures after a factory run: what came in, what was kept and why the rest was not,
what the trainer learned, and how the budgets moved the keep rate of each source.

Everything is read from what the run left: the manifest and ledger parts written since the
factory came up (a sink never appends to a part, so the new parts are exactly this run's rows),
the raw topic's watermarks, the trainer's event logs and the budget history the factory recorded
(``budgets.jsonl``).
"""
from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from schemas import Topics



def _new_parts(out: Path, folder: str, baseline: dict[str, Any]) -> list[Path]:
    old = set(baseline.get("parts", []))
    return [p for p in sorted((out / folder).glob("*.parquet")) if f"{folder}/{p.name}" not in old]


def _rows(parts: list[Path], columns: list[str]) -> dict[str, list]:
    cols: dict[str, list] = {c: [] for c in columns}
    for part in parts:
        t = pq.read_table(part, columns=[c for c in columns if c in pq.read_schema(part).names])
        for c in columns:
            cols[c] += t.column(c).to_pylist() if c in t.column_names else [None] * t.num_rows
    return cols


def trainer_figures(trainer_dir: Path) -> dict[str, Any]:
    steps, tokens, evals = 0, 0, []
    for path in sorted(trainer_dir.glob("runs/*/events.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") in ("train", "eval", "checkpoint", "run_end"):
                steps = max(steps, int(ev.get("step", 0)))
            if ev.get("event") == "eval" and ev.get("heldout_loss") is not None:
                evals.append((int(ev.get("step", 0)), float(ev["heldout_loss"])))
                tokens = max(tokens, int(ev.get("train_tokens", 0)))
    evals.sort()
    return {"steps": steps, "train_tokens": tokens, "evaluations": len(evals),
            "heldout_loss_first": evals[0][1] if evals else None,
            "heldout_loss_last": evals[-1][1] if evals else None,
            "heldout_first_step": evals[0][0] if evals else None, "heldout_last_step": evals[-1][0] if evals else None}


def budget_history(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    updates = [json.loads(ln) for ln in lines if ln.strip()]
    return sorted(updates, key=lambda u: u["budget_version"])


def keep_rates_over_time(updates: list[dict[str, Any]], sources: list[str]) -> dict[str, dict[str, float | None]]:
    """Each source's keep rate in the first, middle and last budget; a source a budget does not name yet
    (no value scores for it so far) is kept at that budget's rate for unknown sources, ``*``."""
    if not updates:
        return {}
    picks = {"first": updates[0], "middle": updates[len(updates) // 2], "last": updates[-1]}
    out: dict[str, dict[str, float | None]] = {}
    for s in sources:
        out[s] = {}
        for k, u in picks.items():
            w = u.get("weights") or {}
            out[s][k] = w.get(s, w.get("*"))
    return out


def collect_summary(run_dir: Path, out: Path, cfg: Any, baseline: dict[str, Any], topics: Topics, *,
                    drained: bool, restarts: dict[str, int]) -> dict[str, Any]:
    from iolayer.ranges import watermarks

    marks = watermarks(cfg.bootstrap, topics.raw)
    start = baseline.get("raw_start", {})
    docs_in = sum(high - int(start.get(str(p), 0)) for p, (_, high) in marks.items())

    man = _rows(_new_parts(out, "manifest", baseline), ["source", "shard", "n_tokens", "n_bytes", "scores_json"])
    led = _rows(_new_parts(out, "ledger", baseline), ["source", "reason", "n_bytes", "budget_version"])
    by_source: dict[str, dict[str, Any]] = defaultdict(lambda: {"in": 0, "kept": 0, "rejected": Counter()})
    applied: set[int] = set()
    for src, scores in zip(man["source"], man["scores_json"]):
        by_source[src]["kept"] += 1
        by_source[src]["in"] += 1
        v = json.loads(scores or "{}").get("budget_version")
        if v is not None:
            applied.add(int(v))
    pruned_docs = pruned_bytes = 0
    for src, reason, n_bytes, version in zip(led["source"], led["reason"], led["n_bytes"], led["budget_version"]):
        by_source[src]["rejected"][reason] += 1
        by_source[src]["in"] += 1
        if reason == "budget_pruned":
            pruned_docs += 1
            pruned_bytes += int(n_bytes or 0)
            if version not in (None, ""):
                applied.add(int(float(version)))
    kept_tokens = sum(int(n or 0) for n in man["n_tokens"])
    kept_bytes = sum(int(n or 0) for n in man["n_bytes"])
    reasons = Counter(r for r in led["reason"])
    updates = budget_history(run_dir / "budgets.jsonl")
    flagged = sorted({k for u in updates for k in u.get("flagged", [])})
    sources = sorted(by_source)
    return {
        "docs_in": docs_in,
        "kept": len(man["source"]),
        "rejected": sum(reasons.values()),
        "accounted": len(man["source"]) + sum(reasons.values()),
        "drained": drained,
        "rejected_by_reason": dict(sorted(reasons.items())),
        "shards": len(set(man["shard"])),
        "tokens": kept_tokens,
        "trainer": trainer_figures(run_dir / "trainer"),
        "budget": {
            "versions_published": len(updates),
            "versions_applied": sorted(applied),
            "docs_pruned": pruned_docs,
            "bytes_pruned": pruned_bytes,
            # pruned documents are never tokenized: their tokens at the kept documents' bytes per token
            "tokens_pruned_est": round(pruned_bytes * kept_tokens / kept_bytes) if kept_bytes else 0,
            "flagged": flagged,
            "keep_rate_over_time": keep_rates_over_time(updates, sources),
        },
        "by_source": {s: {"in": d["in"], "kept": d["kept"], "keep_rate": round(d["kept"] / d["in"], 3) if d["in"] else None,
                          "rejected": dict(sorted(d["rejected"].items()))} for s, d in sorted(by_source.items())},
        "restarts": restarts,
        "out_dir": str(out),
        "run_dir": str(run_dir),
    }


def render_summary(s: dict[str, Any], console: Any = None) -> None:
    """The summary as tables (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=None if sys.stdout.isatty() else 110)
    t = s["trainer"]
    b = s["budget"]

    def loss(v):
        return "-" if v is None else f"{v:.3f}"

    head = Table(title="Token Foundry: the loop", show_header=False, title_justify="left")
    head.add_row("documents in", f"{s['docs_in']}")
    head.add_row("kept (in shards)", f"{s['kept']}  ({s['shards']} shards, {s['tokens']:,} tokens)")
    head.add_row("rejected (ledger)", f"{s['rejected']}  " + ", ".join(f"{r} {n}" for r, n in
                                                                    s["rejected_by_reason"].items()))
    head.add_row("accounted for", f"{s['accounted']} of {s['docs_in']}" + ("" if s["drained"] else "  (not drained)"))
    head.add_row("trainer", f"{t['steps']} steps, {t['train_tokens']:,} tokens; held-out loss "
                            f"{loss(t['heldout_loss_first'])} (step {t['heldout_first_step']}) -> "
                            f"{loss(t['heldout_loss_last'])} (step {t['heldout_last_step']})")
    head.add_row("budgets", f"{b['versions_published']} versions published, applied by the workers: "
                            f"{len(b['versions_applied'])}")
    head.add_row("pruned by budget", f"{b['docs_pruned']} documents, {b['bytes_pruned'] / 1e6:.2f} MB, "
                                     f"~{b['tokens_pruned_est']:,} tokens")
    head.add_row("flagged sources", ", ".join(b["flagged"]) or "none")
    restarted = {n: r for n, r in s["restarts"].items() if r}
    head.add_row("process restarts", ", ".join(f"{n} {r}" for n, r in restarted.items()) or "none")
    console.print(head)

    src = Table(title="By source (keep rate: end to end; budget first / middle / last)",
                title_justify="left")
    for col in ("source", "in", "kept", "keep rate", "budget first", "middle", "last"):
        src.add_column(col, justify="left" if col == "source" else "right")
    over = b["keep_rate_over_time"]

    def rate(v):
        return "-" if v is None else f"{v:.2f}"

    for name, d in s["by_source"].items():
        k = over.get(name, {})
        src.add_row(name, str(d["in"]), str(d["kept"]), rate(d["keep_rate"]), rate(k.get("first")),
                    rate(k.get("middle")), rate(k.get("last")))
    console.print(src)
    reasons = sorted({r for d in s["by_source"].values() for r in d["rejected"]})
    if reasons:
        rej = Table(title="Rejected, by source and reason (the ledger)", title_justify="left")
        rej.add_column("source")
        for r in reasons:
            rej.add_column(r.replace("_", " "), justify="right")
        for name, d in s["by_source"].items():
            rej.add_row(name, *[str(d["rejected"].get(r, 0) or "") for r in reasons])
        console.print(rej)
    console.print(f"shards: {s['out_dir']}/shards   logs and summary.json: {s['run_dir']}")
