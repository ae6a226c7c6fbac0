"""``foundry status``: a live terminal view of a running factory (``--once --json`` for scripts)."""
from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
from rich import box
from rich.columns import Columns
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from foundry.dashboard import dashboard  # noqa: F401 - registered beside status
from foundry.report import report  # noqa: F401
from telemetry.snapshot import collect

DEFAULT_RUN_DIR = "var/factory"
STATE_STYLE = {"running": "green", "restarting": "yellow", "stopped": "dim", "exited": "red"}


def _n(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def _processes(snap: dict[str, Any]) -> Table:
    t = Table(title="processes", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("process", "kind", "state", "pid", "up", "restarts", "metrics"):
        t.add_column(col)
    for p in snap["processes"]:
        state = p.get("state", "?")
        t.add_row(p["name"], p.get("kind", ""), Text(state, style=STATE_STYLE.get(state, "")), str(p.get("pid", "")),
                  f"{p['uptime_s']:.0f}s" if p.get("uptime_s") is not None else "-", str(p.get("restarts", 0)),
                  f":{p['metrics_port']}" + ("" if p["scraped"] else " (no answer)") if p.get("metrics_port") else "-")
    return t


def _stages(snap: dict[str, Any]) -> Table:
    t = Table(title="stages", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("stage", "docs in", "kept", "rejected", "MB in", "docs/s"):
        t.add_column(col, justify="right" if col != "stage" else "left")
    for st, v in snap["stages"].items():
        t.add_row(st, _n(v["in"]), _n(v["kept"]), _n(v["rejected"]), _n(v["bytes"] / 1e6, 2),
                  _n(snap["rates"].get(st), 1))
    s = snap["sinks"]
    for sink, rows in s["rows"].items():
        t.add_row(f"sink {sink}", _n(rows), "", "", "", _n(snap["rates"].get(f"sink:{sink}"), 1))
    t.caption = f"shards {_n(s['shards'])} ({_n(s['shard_bytes'] / 1e6, 1)} MB, {_n(s['tokens'])} tokens)"
    return t


def _pairs(title: str, cols: tuple[str, str], items: dict[str, Any], fmt=_n) -> Table:
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    t.add_column(cols[0])
    t.add_column(cols[1], justify="right")
    for k, v in items.items():
        t.add_row(str(k), fmt(v))
    if not items:
        t.add_row("-", "-")
    return t


def render(snap: dict[str, Any]) -> Group:
    # One row per topic: the total and the worst partition.
    lag = {topic: f"{sum(parts.values()):,.0f} (max {max(parts.values()):,.0f})"
           for topic, parts in sorted(snap["lag"].items()) if parts}
    tr = snap["trainer"]
    trainer = Text(f"trainer: step {_n(tr['step'])}  loss {_n(tr['loss'], 3)}  held-out {_n(tr['heldout_loss'], 3)}"
                   f"  tokens {_n(tr['tokens'])}  {_n(tr['tokens_per_s'])} tokens/s")
    budgets = {k: f"{v:,.0f}" + (" (flagged)" if k in snap["flagged"] else "") for k, v in snap["budgets"].items()}
    keep = {k: f"{v:.1%}" for k, v in snap["keep_rate"].items()}
    head = Text(f"factory {snap.get('namespace') or '?'}  out {snap.get('out_dir') or '?'}  "
                f"{time.strftime('%H:%M:%S', time.localtime(snap['time']))}", style="bold")
    parts = [head]
    if snap["processes"] and not any(p.get("metrics_port") for p in snap["processes"]):
        parts.append(Text("no process serves metrics: set metrics_port in the factory config for the figures",
                          style="yellow"))
    return Group(*parts, Columns([_processes(snap), _stages(snap)]),
                 Columns([_pairs("rejections by reason", ("reason", "docs"), snap["rejections"]),
                          _pairs("consumer lag", ("topic", "messages"), lag, str),
                          _pairs("keep rate by source", ("source", "kept"), keep, str),
                          _pairs(f"budgets (v{snap['budget_version']:.0f})", ("source", "tokens/window"), budgets,
                                 str)]),
                 trainer)


@click.command("status")
@click.option("--run-dir", default=DEFAULT_RUN_DIR, show_default=True, type=click.Path(file_okay=False),
              help="The factory's run folder (holds ps.json).")
@click.option("--once", is_flag=True, help="Print one view and exit.")
@click.option("--json", "as_json", is_flag=True, help="With --once: the snapshot as JSON.")
@click.option("--refresh", default=2.0, show_default=True, help="Seconds between updates.")
def status(run_dir: str, once: bool, as_json: bool, refresh: float) -> None:
    """Live view of a running factory: process states, stage rates, lag, rejections, budgets, trainer."""
    try:
        first = collect(run_dir)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if not first["processes"]:
        click.echo(f"no factory process table in {run_dir} (start one with `foundry up`)", err=True)
        if once:
            sys.exit(1)
    if once:
        # Rates need two looks; one refresh interval apart.
        time.sleep(min(refresh, 1.0))
        snap = collect(run_dir, first)
        if as_json:
            click.echo(json.dumps(snap, indent=2, default=str))
        else:
            Console().print(render(snap))
        return
    snap = first
    with Live(render(snap), refresh_per_second=4, screen=False) as live:
        try:
            while True:
                time.sleep(refresh)
                snap = collect(run_dir, snap)
                live.update(render(snap))
        except KeyboardInterrupt:
            pass
