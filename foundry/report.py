"""``foundry report RUN_OR_OUT_DIR``: a static HTML page (inline SVG) of a finished run.

From an output folder (``out/<namespace>/<recipe version>``: manifests and ledger) it shows
the headline figures, kept and dropped by source, language, length and reason, and sample
rejections per reason. From a factory run folder (``summary.json`` / ``ps.json``) it reads the
output folder the run names, only the parts written since the run began (``baseline.json``),
and adds the budget history (``budgets.jsonl``) and the trainer's loss curves.
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from html import escape
from pathlib import Path
from typing import Any

import click
import pyarrow.parquet as pq

from foundry import report_svg as svg

SAMPLES_PER_REASON = 5


class ReportError(ValueError):
    pass


def locate(path: Path) -> tuple[Path, Path | None]:
    """(output folder, factory run folder or None) for what the user named."""
    if (path / "manifest").is_dir() or (path / "ledger").is_dir():
        return path, None
    for name in ("summary.json", "ps.json"):
        f = path / name
        if f.is_file():
            out = json.loads(f.read_text()).get("out_dir")
            if out and Path(out).is_dir():
                return Path(out), path
            raise ReportError(f"{f} names no existing output folder ({out!r})")
    raise ReportError(f"{path} is neither an output folder (manifest/, ledger/) nor a factory run folder")


def _parts(out: Path, folder: str, run_dir: Path | None) -> list[Path]:
    old: set[str] = set()
    if run_dir is not None and (run_dir / "baseline.json").is_file():
        old = set(json.loads((run_dir / "baseline.json").read_text()).get("parts", []))
    return [p for p in sorted((out / folder).glob("*.parquet")) if f"{folder}/{p.name}" not in old]


def _read(parts: list[Path], columns: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for part in parts:
        names = pq.read_schema(part).names
        t = pq.read_table(part, columns=[c for c in columns if c in names]).to_pylist()
        rows += [{c: r.get(c) for c in columns} for r in t]
    return rows


def length_bucket(n_bytes: int | None) -> str:
    """Powers of four: readable buckets from a tweet to a book."""
    if not n_bytes:
        return "unknown"
    lo = 4 ** int(math.log(max(n_bytes, 1), 4))
    return f"{lo:,}-{lo * 4 - 1:,} B"


def _bucket_key(label: str) -> int:
    return -1 if label == "unknown" else int(label.split("-")[0].replace(",", ""))


def trainer_curves(run_dir: Path | None) -> dict[str, list[tuple[float, float]]]:
    curves: dict[str, list[tuple[float, float]]] = {"training loss": [], "held-out loss": []}
    if run_dir is None:
        return curves
    for path in sorted(run_dir.glob("trainer/runs/*/events.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill
            x = ev.get("train_tokens")
            if ev.get("event") == "train" and x is not None and ev.get("loss") is not None:
                curves["training loss"].append((float(x), float(ev["loss"])))
            elif ev.get("event") == "eval" and x is not None and ev.get("heldout_loss") is not None:
                curves["held-out loss"].append((float(x), float(ev["heldout_loss"])))
    return curves


def budget_history(run_dir: Path | None) -> list[dict[str, Any]]:
    if run_dir is None or not (run_dir / "budgets.jsonl").is_file():
        return []
    out = []
    for line in (run_dir / "budgets.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return sorted(out, key=lambda u: u.get("budget_version", 0))


def collect(path: str | Path) -> dict[str, Any]:
    out, run_dir = locate(Path(path))
    kept = _read(_parts(out, "manifest", run_dir), ["doc_id", "source", "lang", "n_tokens", "n_bytes", "shard"])
    dropped = _read(_parts(out, "ledger", run_dir),
                    ["id", "reason", "stage", "source", "url", "detail", "n_bytes", "score"])
    by_source: dict[str, Counter] = defaultdict(Counter)
    by_lang: dict[str, Counter] = defaultdict(Counter)
    by_length: dict[str, Counter] = defaultdict(Counter)
    for r in kept:
        by_source[r["source"] or "unknown"]["kept"] += 1
        by_lang[r["lang"] or "unknown"]["kept"] += 1
        by_length[length_bucket(r["n_bytes"])]["kept"] += 1
    samples: dict[str, list[dict[str, Any]]] = defaultdict(list)
    reasons: Counter = Counter()
    for r in dropped:
        by_source[r["source"] or "unknown"]["dropped"] += 1
        by_lang["not recorded"]["dropped"] += 1  # the ledger keeps no language
        by_length[length_bucket(r["n_bytes"])]["dropped"] += 1
        reasons[r["reason"]] += 1
        if len(samples[r["reason"]]) < SAMPLES_PER_REASON:
            samples[r["reason"]].append(r)
    shards = {r["shard"] for r in kept}
    shard_bytes = sum((out / "shards" / s).stat().st_size for s in shards if (out / "shards" / s).is_file())
    n = len(kept) + len(dropped)
    return {
        "out_dir": str(out), "run_dir": str(run_dir) if run_dir else None,
        "headline": {"documents": n, "kept": len(kept), "dropped": len(dropped),
                     "keep_rate": round(len(kept) / n, 4) if n else 0.0,
                     "tokens": sum(r["n_tokens"] or 0 for r in kept), "shards": len(shards),
                     "shard_mb": round(shard_bytes / 1e6, 3), "sources": len(by_source)},
        "by_source": {k: dict(v) for k, v in sorted(by_source.items())},
        "by_lang": {k: dict(v) for k, v in sorted(by_lang.items(), key=lambda kv: -sum(kv[1].values()))},
        "by_length": {k: dict(by_length[k]) for k in sorted(by_length, key=_bucket_key)},
        "by_reason": dict(reasons.most_common()),
        "samples": dict(samples),
        "budgets": budget_history(run_dir),
        "curves": trainer_curves(run_dir),
    }


def _table(title: str, rows: dict[str, dict[str, Any]], cols: list[str], key: str) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in [title] + cols)
    body = "".join(f'<tr data-{key}="{escape(k)}"><td>{escape(k)}</td>' +
                   "".join(f'<td data-col="{escape(c)}">{v.get(c, 0):,}</td>' for c in cols) + "</tr>"
                   for k, v in rows.items())
    return f"<table><tr>{head}</tr>{body}</table>"


def _budget_section(budgets: list[dict[str, Any]]) -> str:
    if not budgets:
        return '<p class="empty">No budget history (not a factory run, or no budget agent).</p>'
    keys = sorted({k for u in budgets for k in u.get("budgets", {})})
    series = {k: [(u["budget_version"], u["budgets"][k]) for u in budgets if k in u.get("budgets", {})] for k in keys}
    flagged = sorted({k for u in budgets for k in u.get("flagged", [])})
    note = f"<p>Flagged at some point: {escape(', '.join(flagged))}</p>" if flagged else ""
    return svg.lines(series, "budget per source", "budget version", "tokens per window") + note


def render(data: dict[str, Any]) -> str:
    h = data["headline"]
    heads = "".join(f'<div class="fig"><div class="v" id="fig-{k}">{v:,}</div><div class="k">{k.replace("_", " ")}'
                    f"</div></div>" for k, v in h.items())
    split = ["kept", "dropped"]
    samples = []
    for reason, rows in data["samples"].items():
        items = "".join(f"<tr><td>{escape(str(r['id']))}</td><td>{escape(str(r['source']))}</td>"
                        f"<td>{escape(str(r['stage']))}</td><td>{r['n_bytes'] or ''}</td>"
                        f"<td>{escape(str(r['detail'] or ''))[:300]}</td></tr>" for r in rows)
        samples.append(f'<h3 data-sample="{escape(reason)}">{escape(reason)}</h3><table><tr><th>id</th>'
                       f"<th>source</th><th>stage</th><th>bytes</th><th>detail</th></tr>{items}</table>")
    reasons = {r: {"documents": n} for r, n in data["by_reason"].items()}
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Token Foundry run report</title>
<style>body{{font-family:sans-serif;margin:24px;max-width:1000px}} table{{border-collapse:collapse;margin:8px 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}} td:first-child{{text-align:left}}
.figs{{display:flex;flex-wrap:wrap;gap:12px}} .fig{{border:1px solid #ddd;padding:8px 14px;border-radius:6px}}
.fig .v{{font-size:22px;font-weight:bold}} .fig .k{{color:#666;font-size:12px}} .empty{{color:#888}}</style>
</head><body><h1>Run report</h1><p>Output {escape(data["out_dir"])}{
        " &middot; run " + escape(data["run_dir"]) if data["run_dir"] else ""}</p>
<div class="figs">{heads}</div>
<h2>By source</h2>{svg.stacked_bars(data["by_source"], split, "kept and dropped by source")}
{_table("source", data["by_source"], split, "source")}
<h2>By reason</h2>{svg.stacked_bars(reasons, ["documents"], "dropped by reason")}
{_table("reason", reasons, ["documents"], "reason")}
<h2>By language</h2>{svg.stacked_bars(data["by_lang"], split, "kept and dropped by language")}
<h2>By length</h2>{svg.stacked_bars(data["by_length"], split, "kept and dropped by length")}
{_table("length", data["by_length"], split, "length")}
<h2>Budgets</h2>{_budget_section(data["budgets"])}
<h2>Training</h2>{svg.lines(data["curves"], "loss against training tokens", "training tokens", "loss")}
<h2>Sample rejections</h2>{"".join(samples) or '<p class="empty">none</p>'}
</body></html>
"""


@click.command("report")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False),
              help="HTML file to write (default: PATH/report.html).")
@click.option("--json", "as_json", is_flag=True, help="Print the report's figures as JSON too.")
def report(path: str, out_file: str | None, as_json: bool) -> None:
    """Write a static HTML report of a finished run (an output folder or a factory run folder)."""
    try:
        data = collect(path)
    except (ReportError, json.JSONDecodeError) as exc:
        raise click.ClickException(str(exc)) from None
    target = Path(out_file) if out_file else Path(path) / "report.html"
    target.write_text(render(data), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(data, indent=1, default=str))
    else:
        h = data["headline"]
        click.echo(f"report written to {target}: {h['documents']:,} documents, {h['kept']:,} kept, "
                   f"{h['dropped']:,} dropped, {h['tokens']:,} tokens in {h['shards']} shards")
