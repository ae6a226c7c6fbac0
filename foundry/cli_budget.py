"""``foundry budget`` (runs the budget agent) and ``foundry budget-report`` (what pruning removed)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
import yaml

_BOOTSTRAP = os.environ.get("FOUNDRY_BOOTSTRAP", "127.0.0.1:9092")


def _settings(config_path: Path | None, sets: tuple[str, ...]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if config_path is not None:
        data = yaml.safe_load(config_path.read_text()) or {}
    for pair in sets:
        if "=" not in pair:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--set")
        key, raw = pair.split("=", 1)
        data[key.strip()] = yaml.safe_load(raw)
    return data


@click.command("budget")
@click.option("--bootstrap", default=_BOOTSTRAP, show_default=True,
              help="Kafka bootstrap servers (env FOUNDRY_BOOTSTRAP).")
@click.option("--namespace", default="live", show_default=True, help="Topic namespace: values in, budgets out.")
@click.option("--window-tokens", type=int, default=200_000, show_default=True,
              help="Close a budget window after this many scored tokens ...")
@click.option("--window-s", type=float, default=60.0, show_default=True,
              help="... or after this many seconds with scores buffered.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML file of allocator settings (see AllocatorConfig in streams/budget/allocator.py).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="One allocator setting, e.g. source_floor=0.05.")
@click.option("--no-rejections", is_flag=True, help="Do not read the rejections topic (no near-duplicate flood guard).")
@click.option("--loglevel", default="WARNING", show_default=True)
def budget(bootstrap: str, namespace: str, window_tokens: int, window_s: float, config_path: Path | None,
           sets: tuple[str, ...], no_rejections: bool, loglevel: str) -> None:
    """Run the budget agent: value scores in, token budgets (BudgetUpdate) out on the budgets topic."""
    from streams.budget.agent import run_budget_agent
    from streams.budget.allocator import AllocatorConfig

    try:
        config = AllocatorConfig.from_dict(_settings(config_path, sets))
    except (TypeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    run_budget_agent(bootstrap, namespace, config=config, window_tokens=window_tokens, window_s=window_s,
                     use_rejections=not no_rejections, loglevel=loglevel)


@click.command("budget-report")
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--starve-share", type=float, default=0.9, show_default=True,
              help="Mark groups with at least this share of their bytes pruned.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def budget_report(out_dir: Path, starve_share: float, as_json: bool) -> None:
    """What budget pruning removed from OUT_DIR (out/<ns>/<recipe version>), by source, language and length."""
    from streams.budget.report import format_report, from_output_dir, removal_report

    rep = removal_report(from_output_dir(out_dir), starve_share=starve_share)
    click.echo(json.dumps(rep, indent=2) if as_json else format_report(rep))

