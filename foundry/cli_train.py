"""``foundry train``: the continuous trainer's command line (the trainer itself is in ``trainer/``)."""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import click
import yaml

from trainer.config import load_config


def _overrides(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``model.n_layer=2`` -> {"model": {"n_layer": 2}} (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--set")
        key, raw = pair.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return out


@click.command("train")
@click.option("--bootstrap", default=lambda: os.environ.get("FOUNDRY_BOOTSTRAP", "127.0.0.1:9092"),
              show_default="$FOUNDRY_BOOTSTRAP or 127.0.0.1:9092", help="Kafka bootstrap servers.")
@click.option("--namespace", default="live", show_default=True, help="Topic namespace (shards in, values out).")
@click.option("--config", "config_path", default="default", show_default=True,
              help="YAML config file, or the name of a shipped one (default, tiny).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config field, e.g. model.n_layer=2.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Checkpoints and logs [default: var/trainer/NAMESPACE].")
@click.option("--export-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="ONNX exports of the language model, for foundry generate --checkpoint [default: RUN_DIR/export].")
@click.option("--max-steps", type=int, default=None, help="Stop at this step (counted over the run, resumes included).")
@click.option("--until-idle", type=float, default=None, metavar="SECONDS",
              help="Stop once no new shard has arrived for SECONDS and every announced shard is trained.")
@click.option("--manifests", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read ShardManifests from this JSON-lines file instead of the shards topic.")
@click.option("--values-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write ValueScores to this JSON-lines file instead of the values topic.")
@click.option("--quiet", is_flag=True, help="Only the final summary on the console.")
def train_command(bootstrap: str, namespace: str, config_path: str, sets: tuple[str, ...], run_dir: Path | None,
                  export_dir: Path | None, max_steps: int | None, until_idle: float | None,
                  manifests: Path | None, values_out: Path | None, quiet: bool) -> None:
    """Train a small language model continuously on the shards stream and publish value scores."""
    from contextlib import nullcontext

    from telemetry.console import err_console, progress_bar
    from trainer.loop import Trainer
    from trainer.shard_feed import FileShardFeed, KafkaShardFeed
    from trainer.value_publisher import JsonlValuePublisher, KafkaValuePublisher

    from telemetry import start_exporter

    start_exporter()
    cfg = load_config(config_path, _overrides(sets))
    run_dir = run_dir or Path("var") / "trainer" / namespace
    feed = FileShardFeed(manifests) if manifests else KafkaShardFeed(bootstrap, namespace)
    publisher = JsonlValuePublisher(str(values_out)) if values_out else KafkaValuePublisher(bootstrap, namespace)
    console = err_console()
    bar = progress_bar("training", max_steps, unit="steps", console=console) if (
        console.is_terminal and not quiet) else nullcontext()
    old = {}
    try:
        with bar as update:
            # on a terminal the trainer's lines print above the bar (steps, rate, time left to --max-steps)
            echo = None if quiet else ((lambda line: console.print(line, markup=False, highlight=False)) if update
                                       else (lambda line: click.echo(line, err=True)))
            on_batch = (lambda step, _batch, _out: update(step + 1)) if update else None
            trainer = Trainer(cfg, run_dir, feed, publisher, export_dir=export_dir, max_steps=max_steps,
                              until_idle=until_idle, echo=echo, on_batch=on_batch)

            def _stop(signum, frame):  # noqa: ANN001 - a checkpoint is written on the way out
                trainer.request_stop()

            old = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
            summary = trainer.run()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        feed.close()
        publisher.close()
    loss = "n/a" if summary.last_heldout_loss is None else f"{summary.last_heldout_loss:.4f}"
    click.echo(f"stopped ({summary.stop_reason}) at step {summary.final_step}: {summary.steps} steps this run, "
               f"{summary.train_tokens} training tokens, held-out loss {loss}, runs {', '.join(summary.runs) or '-'}")

