"""The ``foundry`` command line."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

DEFAULT_BOOTSTRAP = os.environ.get("FOUNDRY_BOOTSTRAP", "127.0.0.1:9092")
bootstrap_opt = click.option("--bootstrap", default=DEFAULT_BOOTSTRAP, show_default=True,
                             help="Kafka bootstrap servers (env FOUNDRY_BOOTSTRAP).")
namespace_opt = click.option("--namespace", default="live", show_default=True,
                             help="Topic namespace: 'live' for the always-on pipeline.")
raw_topic_opt = click.option("--raw-topic", default="foundry.raw", show_default=True,
                             help="The raw topic to read (the live one, or an isolated one).")
recipe_opt = click.option("--recipe", "recipe_path", default=None, type=click.Path(dir_okay=False),
                          help="Recipe YAML (default: the shipped default recipe).")


def _recipe(path):
    from foundry.recipe import RecipeError, load_recipe

    try:
        return load_recipe(path)
    except RecipeError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main() -> None:
    """Token Foundry: raw documents in, curated tokenized WebDataset shards out."""


@main.group()
def topics() -> None:
    """Manage the Kafka topics."""


@topics.command("create")
@bootstrap_opt
@namespace_opt
@click.option("--partitions", default=None, type=int, help="Partitions (default: the recipe's).")
@recipe_opt
@raw_topic_opt
def topics_create(bootstrap, namespace, partitions, recipe_path, raw_topic) -> None:
    """Create the namespace's topics (idempotent)."""
    from foundry.admin import create_topics
    from schemas import Topics

    parts = partitions or _recipe(recipe_path).partitions
    res = create_topics(bootstrap, Topics(namespace=namespace, partitions=parts, raw_name=raw_topic))
    click.echo(json.dumps(res, indent=2))


@main.command()
@bootstrap_opt
@namespace_opt
@recipe_opt
@raw_topic_opt
@click.option("--loglevel", default="WARNING")
def worker(bootstrap, namespace, recipe_path, raw_topic, loglevel) -> None:
    """Run a stream worker (the Faust agents) for a resolved recipe."""
    from streams.worker import run_worker

    sys.argv = [sys.argv[0], "worker"]  # Faust's worker parses argv; keep ours out of it
    run_worker(recipe_path, bootstrap, namespace, loglevel=loglevel, raw_topic=raw_topic)


def _sink_options(f):
    for opt in reversed([bootstrap_opt, namespace_opt, recipe_opt,
                         click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False)),
                         click.option("--until-idle", type=float, default=None,
                                      help="Stop after this many seconds without new messages.")]):
        f = opt(f)
    return f


@main.command("shard-writer")
@_sink_options
def shard_writer(bootstrap, namespace, recipe_path, out_dir, until_idle) -> None:
    """Pack tokenized documents into WebDataset shards."""
    import logging

    from consumers.shard_writer import ShardWriter
    from streams.stages.tokenize import SentencePieceTokenizer

    logging.basicConfig(level="INFO")
    recipe = _recipe(recipe_path)
    vocab = SentencePieceTokenizer(recipe.tokenizer.model).vocab_size
    s = recipe.shards
    ShardWriter(bootstrap, out_dir, namespace=namespace, recipe_version=recipe.version, vocab_size=vocab,
                max_tokens=s.max_tokens, max_bytes=s.max_bytes, timeout_s=s.timeout_s).run(until_idle=until_idle)


@main.command()
@_sink_options
def ledger(bootstrap, namespace, recipe_path, out_dir, until_idle) -> None:
    """Write every Rejection to the Parquet ledger."""
    import logging

    from consumers.ledger import RejectionLedger

    logging.basicConfig(level="INFO")
    recipe = _recipe(recipe_path)
    RejectionLedger(bootstrap, out_dir, namespace=namespace, recipe_version=recipe.version,
                    timeout_s=recipe.shards.timeout_s).run(until_idle=until_idle)


@main.command()
@bootstrap_opt
@namespace_opt
@recipe_opt
@raw_topic_opt
@click.option("--corpus", multiple=True, help="JSONL, JSONL.gz or Parquet files or folders (default: generated).")
@click.option("--generate", "n_generated", default=5000, show_default=True, help="Generated documents if no corpus.")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", "out_root", default="out", show_default=True, type=click.Path(file_okay=False))
@click.option("--kafka-home", default=None, help="Start (and afterwards stop) a local broker here if none answers.")
@click.option("--timeout", default=1800.0, show_default=True)
def run(bootstrap, namespace, recipe_path, raw_topic, corpus, n_generated, seed, out_root, kafka_home, timeout) -> None:
    """Feed a corpus through the whole pipeline until drained, then summarize."""
    from foundry.run import run_pipeline, summary_text
    from streams.publisher import BrokerUnavailable, check_broker

    cluster = None
    try:
        check_broker(bootstrap, timeout=5)
    except BrokerUnavailable:
        if kafka_home is None:
            raise
        from foundry.broker import KafkaCluster

        port = int(bootstrap.rsplit(":", 1)[1])
        cluster = KafkaCluster(Path(kafka_home), port=port)
        click.echo(f"starting Kafka in {kafka_home} ...")
        cluster.up()
    try:
        summary = run_pipeline(bootstrap, _recipe(recipe_path), corpus=list(corpus) or None,
                               n_generated=n_generated, seed=seed, namespace=namespace, out_root=out_root, raw_topic=raw_topic,
                               timeout=timeout, echo=click.echo)
    finally:
        if cluster is not None:
            click.echo("stopping the Kafka broker this run started")
            cluster.down()
    click.echo(summary_text(summary))
    click.echo(f"shards are in {summary.out_dir}/shards")


def _register_optional() -> None:
    """Commands that live beside their subsystem."""
    import importlib

    for module, names in (("foundry.cli_kafka", ["kafka"]), ("foundry.score", ["score"]),
                          ("trainer.cli", ["train"]),
                          ("foundry.cli_sources", ["crawl", "generate", "ingest"])):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(module.split(".")[0]) and exc.name == module:
                continue  # not built yet
            raise
        for n in names:
            cmd = getattr(mod, n, None) or getattr(mod, n + "_command", None)
            if cmd is not None:
                main.add_command(cmd, n)


_register_optional()

if __name__ == "__main__":
    main()
