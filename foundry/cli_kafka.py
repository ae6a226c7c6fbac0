"""`foundry kafka up|down|status`: the local KRaft cluster of foundry.broker.

Registered in the main CLI with ``main.add_command(kafka)``.
Default home: ``$FOUNDRY_HOME/kafka``, else ``./var/kafka`` (relative to the cwd).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from foundry.broker import BrokerError, KafkaCluster


def default_home() -> Path:
    env = os.environ.get("FOUNDRY_HOME")
    return Path(env) / "kafka" if env else Path.cwd() / "var" / "kafka"


home_option = click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
                           help="Cluster folder (default: $FOUNDRY_HOME/kafka or ./var/kafka).")


def _cluster(home: Path | None, **overrides) -> KafkaCluster:
    return KafkaCluster.from_home(home or default_home(), **overrides)


@click.group()
def kafka() -> None:
    """Run a local Apache Kafka (KRaft) cluster from Maven Central jars."""


@kafka.command()
@home_option
@click.option("--brokers", type=click.Choice(["1", "3"]), default=None,
              help="1: combined broker+controller; 3: one controller + three brokers (default: as recorded, else 1).")
@click.option("--port", type=int, default=None, help="First broker port (default: as recorded, else 9092).")
@click.option("--version", "version", default=None, help="Kafka version (default: foundry.broker.KAFKA_VERSION).")
@click.option("--heap", default=None, help="Broker JVM heap, e.g. 512m.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for readiness.")
def up(home: Path | None, brokers: str | None, port: int | None, version: str | None, heap: str | None,
       timeout: float) -> None:
    """Fetch jars if needed, format storage, start the nodes; prints the bootstrap servers."""
    cluster = _cluster(home, brokers=int(brokers) if brokers else None, port=port, version=version, heap=heap)
    t0 = time.monotonic()
    try:
        bootstrap = cluster.up(timeout=timeout)
    except BrokerError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"kafka up in {time.monotonic() - t0:.1f}s at {cluster.home}", err=True)
    click.echo(bootstrap)


@kafka.command()
@home_option
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds before SIGKILL.")
def down(home: Path | None, timeout: float) -> None:
    """Stop the nodes (SIGTERM, then SIGKILL after --timeout)."""
    cluster = _cluster(home)
    cluster.down(timeout=timeout)
    click.echo(f"kafka down at {cluster.home}", err=True)


@kafka.command()
@home_option
def status(home: Path | None) -> None:
    """Print the nodes' state (pid, alive, port, answers, RSS) as JSON."""
    click.echo(json.dumps(_cluster(home).status(), indent=2))


if __name__ == "__main__":  # python -m foundry.cli_kafka
    kafka()
