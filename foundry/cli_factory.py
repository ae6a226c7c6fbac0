"""``foundry up``, ``foundry down``, ``foundry ps`` and ``foundry demo``: the factory as one system."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import click

config_opt = click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None,
                          help="Factory YAML (foundry/factory_config.py; default: every default).")
run_dir_opt = click.option("--run-dir", default=None, type=click.Path(file_okay=False),
                           help="The factory's run folder [default: the config's run_dir, var/factory].")


def _config(config_path, **overrides):
    from foundry.factory_config import ConfigError, load_factory_config

    try:
        return load_factory_config(config_path, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _run_dir(config_path, run_dir) -> Path:
    return Path(run_dir) if run_dir else _config(config_path).run_path


def _run_factory(factory, for_seconds, as_json: bool, progress=None) -> None:
    """Run the factory (inside ``progress``, the demo's bar, when given), then print its summary."""
    from contextlib import nullcontext

    from foundry.factory import FactoryError
    from foundry.factory_summary import render_summary

    with progress or nullcontext():
        try:
            summary = factory.run(for_seconds=for_seconds)
        except FactoryError as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(summary, indent=1, ensure_ascii=False))
    else:
        render_summary(summary)


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


@click.command("up")
@config_opt
@run_dir_opt
@click.option("--detach", is_flag=True, help="Run in the background; `foundry down` stops it.")
@click.option("--for", "for_seconds", type=float, default=None, metavar="SECONDS",
              help="Stop by itself after SECONDS (default: run until stopped).")
@click.option("--json", "as_json", is_flag=True, help="The final summary as JSON.")
def up(config_path, run_dir, detach, for_seconds, as_json) -> None:
    """Start the whole factory (broker, topics, workers, sinks, trainer, budget agent, sources) and keep it
    running: a process that dies is restarted with backoff. Ctrl-C or `foundry down` stops it in order."""
    from foundry.factory import Factory, running_pid

    cfg = _config(config_path, run_dir=run_dir)
    pid = running_pid(cfg.run_path)
    if pid is not None:
        raise click.ClickException(f"a factory is already running in {cfg.run_path} (pid {pid}): "
                                   f"`foundry ps` shows it, `foundry down` stops it")
    if not detach:
        _run_factory(Factory(cfg, echo=_echo_err), for_seconds, as_json)
        return
    cfg.run_path.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "foundry.cli", "up", "--run-dir", str(cfg.run_path)]
    argv += ["--config", config_path] if config_path else []
    argv += ["--for", str(for_seconds)] if for_seconds else []
    with open(cfg.run_path / "factory.out", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    _wait_started(cfg.run_path, proc)
    _print_ps(cfg.run_path, as_json=False)


def _wait_started(run_dir: Path, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    from foundry.supervisor import read_state

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (run_dir / "factory.out").read_text(errors="replace")[-2000:]
            raise click.ClickException(f"the factory exited with {proc.returncode}:\n{tail}")
        state = read_state(run_dir)
        if state and state.get("phase") == "running" and state.get("supervisor_pid") == proc.pid:
            return
        time.sleep(0.5)
    raise click.ClickException(f"the factory did not come up within {timeout:.0f}s; see {run_dir}/factory.out")


@click.command("down")
@config_opt
@run_dir_opt
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait for the ordered stop.")
def down(config_path, run_dir, timeout) -> None:
    """Stop a running factory in order: sources, drain, trainer and budget agent, workers, sinks, broker."""
    import signal

    from foundry.factory import running_pid
    from foundry.factory_summary import render_summary

    path = _run_dir(config_path, run_dir)
    pid = running_pid(path)
    if pid is None:
        raise click.ClickException(f"no factory is running in {path}")
    os.kill(pid, signal.SIGTERM)
    click.echo(f"stopping the factory (pid {pid}) ...", err=True)
    deadline = time.monotonic() + timeout
    while running_pid(path) is not None:
        if time.monotonic() > deadline:
            raise click.ClickException(f"the factory (pid {pid}) did not stop within {timeout:.0f}s")
        time.sleep(0.5)
    summary = path / "summary.json"
    if summary.exists():
        render_summary(json.loads(summary.read_text()))


def _print_ps(run_dir: Path, as_json: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from foundry.supervisor import read_state

    state = read_state(run_dir)
    if state is None:
        raise click.ClickException(f"no factory state in {run_dir} (`foundry up` writes it)")
    if as_json:
        click.echo(json.dumps(state, indent=1))
        return
    now = time.time()
    alive = "running" if state["supervisor_alive"] else "not running"
    table = Table(title=f"factory {alive} ({state.get('phase', '?')}), pid {state.get('supervisor_pid')}, "
                        f"namespace {state.get('namespace')}, output {state.get('out_dir')}")
    for col in ("process", "pid", "state", "uptime", "restarts", "log"):
        table.add_column(col)
    for p in state["processes"]:
        up_s = now - p["started"] if p["state"] == "running" and p.get("started") else None
        table.add_row(p["name"], str(p.get("pid") or "-"), p["state"],
                      "-" if up_s is None else f"{up_s:.0f}s", str(p.get("restarts", 0)), p.get("log", ""))
    Console().print(table)


@click.command("ps")
@config_opt
@run_dir_opt
@click.option("--json", "as_json", is_flag=True)
def ps(config_path, run_dir, as_json) -> None:
    """Each process of the factory: pid, state, uptime, restarts."""
    _print_ps(_run_dir(config_path, run_dir), as_json)


@click.command("demo")
@click.option("--minutes", type=float, default=lambda: float(os.environ.get("DEMO_MINUTES", "3")),
              show_default="$DEMO_MINUTES or 3", help="How long the sources keep arriving.")
@click.option("--corpus", multiple=True, help="Real text to use (JSONL/Parquet files); default: ../shared/data "
                                              "beside the checkout when present, else generated text.")
@click.option("--bootstrap", default=lambda: os.environ.get("FOUNDRY_BOOTSTRAP", "127.0.0.1:9092"),
              show_default="$FOUNDRY_BOOTSTRAP or 127.0.0.1:9092")
@click.option("--kafka-home", default="var/kafka", show_default=True,
              help="Start a local broker here when none answers ('' : never).")
@click.option("--run-dir", default="var/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--out", default="out", show_default=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="The summary as JSON.")
def demo(minutes, corpus, bootstrap, kafka_home, run_dir, out, as_json) -> None:
    """Run the whole loop for a few minutes on real and low-value sources, then stop and summarize."""
    from foundry.demo import demo_config, reset_demo
    from foundry.factory import Factory, FactoryError, running_pid

    seconds = minutes * 60.0
    cfg = demo_config(seconds, corpus=list(corpus) or None, run_dir=run_dir, out=out, bootstrap=bootstrap,
                      kafka_home=kafka_home or None)
    if running_pid(cfg.run_path) is not None:
        raise click.ClickException(f"a demo is already running in {cfg.run_path}")
    factory = Factory(cfg, echo=_echo_err)
    try:
        factory._broker()  # the demo's reset needs the broker; the factory stops it at the end if it started it
        reset_demo(cfg)
    except FactoryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"demo: {len(cfg.sources)} sources arriving for {minutes:g} min "
               f"({', '.join(s.name for s in cfg.sources)}); meanwhile, in another terminal: "
               f"`foundry status --run-dir {run_dir}` (live view), `foundry dashboard --run-dir {run_dir}` "
               f"(plots), `foundry ps --run-dir {run_dir}` (processes)", err=True)
    _run_factory(factory, seconds, as_json, progress=_demo_progress(seconds, factory))


@contextmanager
def _demo_progress(seconds: float, factory):
    """A bar over the demo's minutes with what the loop has done so far (the factory's own lines print
    above it); off a terminal, nothing."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from telemetry.console import err_console

    columns = [SpinnerColumn(), TextColumn("[bold]the loop"), BarColumn(), TimeElapsedColumn(), TextColumn("left"),
               TimeRemainingColumn(), TextColumn("{task.fields[docs]:,} documents accounted, "
                                                 "{task.fields[budgets]} budgets")]
    console = err_console()
    if not console.is_terminal:
        yield
        return
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("demo", total=seconds, docs=0, budgets=0)

        def update(elapsed: float, docs: int, budgets: int) -> None:
            bar.update(task, completed=min(elapsed, seconds), docs=docs, budgets=budgets)

        echo = factory.echo
        factory.progress, factory.echo = update, lambda line: bar.console.print(line, highlight=False)
        try:
            yield
        finally:
            factory.progress, factory.echo = None, echo
