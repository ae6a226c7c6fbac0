"""The ``foundry`` command line."""
from __future__ import annotations

import json
from pathlib import Path

import click

from foundry.cli_audit import audit
from foundry.cli_budget import budget, budget_report
from foundry.cli_factory import demo, down, ps, up
from foundry.cli_common import (DEFAULT_BOOTSTRAP, _recipe, bootstrap_opt, namespace_opt,  # noqa: F401
                                 raw_topic_opt, recipe_opt)
from foundry.cli_kafka import kafka
from foundry.cli_replay import archive, diff, replay
from foundry.cli_sources import crawl, generate, ingest
from foundry.cli_status import dashboard, report, status
from foundry.cli_train import train_command
from foundry.score import score


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
@click.option("--raw-retention", default=None,
              help="Raw topic retention: forever (default), a time (7d, 12h) or a size per partition (50GB). "
                   "Applied to an existing raw topic too.")
@click.option("--replication", default=None, type=int,
              help="Replicas per partition (default: the cluster's default.replication.factor).")
def topics_create(bootstrap, namespace, partitions, recipe_path, raw_topic, raw_retention, replication) -> None:
    """Create the namespace's topics (idempotent)."""
    from iolayer.topics_admin import create_topics, set_topic_config
    from schemas import Topics
    from schemas.topics import parse_retention

    parts = partitions or _recipe(recipe_path).partitions
    ms, size = -1, -1
    if raw_retention:
        try:
            ms, size = parse_retention(raw_retention)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    topics = Topics(namespace=namespace, partitions=parts, raw_name=raw_topic, raw_retention_ms=ms,
                    raw_retention_bytes=size)
    res = create_topics(bootstrap, topics, replication=replication)
    if raw_retention and res.get(topics.raw) == "exists":
        set_topic_config(bootstrap, topics.raw, {"retention.ms": str(ms), "retention.bytes": str(size)})
        res[topics.raw] = f"exists; retention set to {raw_retention}"
    click.echo(json.dumps(res, indent=2))


@main.command()
@bootstrap_opt
@namespace_opt
@recipe_opt
@raw_topic_opt
@click.option("--loglevel", default="WARNING",
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--skip-ingest", is_flag=True, help="Leave out the ingest agent (a replay feeds the sequenced topic).")
@click.option("--compression", default="none", show_default=True,
              type=click.Choice(["none", "zstd", "lz4", "gzip", "snappy"]),
              help="How the worker compresses what it produces: none where CPU is short and the broker is "
                   "local (the default), zstd across a network.")
def worker(bootstrap, namespace, recipe_path, raw_topic, loglevel, skip_ingest, compression) -> None:
    """Run a stream worker (the Faust agents) for a resolved recipe."""
    from streams.worker import run_worker

    run_worker(recipe_path, bootstrap, namespace, loglevel=loglevel, raw_topic=raw_topic, ingest=not skip_ingest,
               compression=compression)


def _sink_options(f):
    for opt in reversed([bootstrap_opt, namespace_opt, recipe_opt,
                         click.option("--out", "out_root", default="out", show_default=True,
                                      type=click.Path(file_okay=False),
                                      help="Output root; files go to OUT/<namespace>/<recipe version>/."),
                         click.option("--until-idle", type=float, default=None,
                                      help="Stop after this many seconds without new messages."),
                         click.option("--stop-at-file", default=None,
                                      help="Stop at the end offsets this JSON file names once it appears.")]):
        f = opt(f)
    return f


@main.command("shard-writer")
@_sink_options
def shard_writer(bootstrap, namespace, recipe_path, out_root, until_idle, stop_at_file) -> None:
    """Pack tokenized documents into WebDataset shards."""
    import logging

    from consumers.shard_writer import ShardWriter
    from foundry.run import output_dir
    from streams.stages.tokenize import SentencePieceTokenizer

    logging.basicConfig(level="INFO")
    recipe = _recipe(recipe_path)
    out_dir = output_dir(out_root, namespace, recipe)
    vocab = SentencePieceTokenizer(recipe.tokenizer.model).vocab_size
    s = recipe.shards
    ShardWriter(bootstrap, out_dir, namespace=namespace, recipe_version=recipe.version, vocab_size=vocab,
                max_tokens=s.max_tokens, max_bytes=s.max_bytes, timeout_s=s.timeout_s).run(
        until_idle=until_idle, stop_at_file=stop_at_file)


@main.command()
@_sink_options
def ledger(bootstrap, namespace, recipe_path, out_root, until_idle, stop_at_file) -> None:
    """Write every Rejection to the Parquet ledger."""
    import logging

    from consumers.ledger import RejectionLedger
    from foundry.run import output_dir

    logging.basicConfig(level="INFO")
    recipe = _recipe(recipe_path)
    out_dir = output_dir(out_root, namespace, recipe)
    RejectionLedger(bootstrap, out_dir, namespace=namespace, recipe_version=recipe.version,
                    timeout_s=recipe.shards.timeout_s).run(until_idle=until_idle, stop_at_file=stop_at_file)


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
@click.option("--workers", default=1, show_default=True, help="Stream worker processes (Faust splits the partitions).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of a table.")
def run(bootstrap, namespace, recipe_path, raw_topic, corpus, n_generated, seed, out_root, kafka_home, timeout,
        workers, as_json) -> None:
    """Feed a corpus through the whole pipeline until drained, then summarize."""
    from dataclasses import asdict

    from foundry.run import run_pipeline
    from iolayer.publisher import BrokerUnavailable, check_broker
    from telemetry.console import print_summary, waiting

    cluster = None
    try:
        check_broker(bootstrap, timeout=5, quiet=True)  # a refusal here is expected: no client log lines
    except BrokerUnavailable:
        if kafka_home is None:
            raise
        from foundry.broker import KafkaCluster

        port = int(bootstrap.rsplit(":", 1)[1])
        cluster = KafkaCluster(Path(kafka_home), port=port)
        with waiting(f"waiting for the broker (starting Kafka in {kafka_home})"):
            cluster.up()
    try:
        summary = run_pipeline(bootstrap, _recipe(recipe_path), corpus=list(corpus) or None,
                               n_generated=n_generated, seed=seed, namespace=namespace, out_root=out_root, raw_topic=raw_topic,
                               timeout=timeout, workers=workers, echo=click.echo)
    finally:
        if cluster is not None:
            click.echo("stopping the Kafka broker this run started")
            cluster.down()
    print_summary("run summary", asdict(summary), as_json=as_json)
    if not as_json:
        click.echo(f"shards are in {summary.out_dir}/shards")


# the commands kept in their own modules of this package
for _command, _name in ((kafka, "kafka"), (score, "score"), (train_command, "train"), (crawl, "crawl"),
                        (generate, "generate"), (ingest, "ingest"), (replay, "replay"), (archive, "archive"),
                        (diff, "diff"), (audit, "audit"), (budget, "budget"), (budget_report, "budget-report"),
                        (up, "up"), (down, "down"), (ps, "ps"), (demo, "demo"), (status, "status"),
                        (dashboard, "dashboard"), (report, "report")):
    main.add_command(_command, _name)

if __name__ == "__main__":
    main()
