"""Console output for long commands: one spinner line while waiting, progress bars with
rate and time left, and a summary table (or JSON for scripts). All on rich."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskProgressColumn,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table


def err_console() -> Console:
    return Console(stderr=True, highlight=False)


@contextmanager
def waiting(message: str, console: Console | None = None) -> Iterator[None]:
    """One line while something slow happens: a spinner on a terminal, the plain line otherwise."""
    console = console or err_console()
    if console.is_terminal:
        with console.status(message, spinner="dots"):
            yield
    else:
        console.print(message + " ...")
        yield


@contextmanager
def progress_bar(description: str, total: float | None, unit: str = "docs",
                 console: Console | None = None) -> Iterator[Any]:
    """A bar with count, rate and time left; yields ``update(done, total=None)``.
    Off a terminal rich draws nothing until the end, so nothing floods a log file."""
    console = console or err_console()
    columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
               TextColumn("left"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total, rate="")

        def update(done: float, new_total: float | None = None) -> None:
            t = progress.tasks[task]
            speed = t.speed
            progress.update(task, completed=done, total=new_total if new_total is not None else t.total,
                            rate=f"{speed:,.0f} {unit}/s" if speed else "")

        yield update


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, Mapping):
        return ", ".join(f"{k} {_cell(x)}" for k, x in v.items()) or "-"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v)) or "-"
    return "-" if v is None else str(v)


def summary_table(title: str, figures: Mapping[str, Any]) -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("figure")
    table.add_column("value", overflow="fold")
    for k, v in figures.items():
        table.add_row(k.replace("_", " "), _cell(v))
    return table


def print_summary(title: str, figures: Mapping[str, Any], as_json: bool = False,
                  console: Console | None = None) -> None:
    """The final summary of a command: a table for people, one JSON object with ``as_json``."""
    if as_json:
        sys.stdout.write(json.dumps(dict(figures), indent=2, ensure_ascii=False, default=str) + "\n")
        return
    (console or Console(highlight=False)).print(summary_table(title, figures))
