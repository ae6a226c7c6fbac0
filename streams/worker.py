"""Entry point of a stream worker process: ``foundry worker`` runs this."""
from __future__ import annotations

import logging
import os

import faust

from schemas.recipe import load_recipe
from schemas import Topics
from streams.app import create_app
from telemetry.metrics import start_exporter, start_lag_probe


def legacy_backlog(bootstrap: str, topics: Topics, group: str) -> int:
    """Documents in the pre-merge ``unique`` topic (between dedup and curation in earlier
    builds) that ``group`` has not consumed: they would never reach a shard now."""
    from confluent_kafka.admin import AdminClient

    from streams.topic_reader import committed, watermarks

    if topics.legacy_unique not in AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics:
        return 0
    marks = watermarks(bootstrap, topics.legacy_unique)
    done = committed(bootstrap, group, topics.legacy_unique, list(marks))
    return sum(max(0, high - max(done.get(p, 0), low)) for p, (low, high) in marks.items())


def run_worker(recipe_path: str, bootstrap: str, namespace: str = "live", datadir: str | None = None,
               loglevel: str = "WARNING", raw_topic: str = "foundry.raw", ingest: bool = True,
               compression: str = "none") -> None:
    recipe = load_recipe(recipe_path)
    topics = Topics(namespace=namespace, partitions=recipe.partitions, raw_name=raw_topic)
    left = legacy_backlog(bootstrap, topics, topics.worker_group(recipe.version))
    if left:
        raise SystemExit(f"{topics.legacy_unique} still holds {left} documents this recipe's worker has not "
                         f"curated (written by a build with a separate curate agent): finish them with that "
                         f"build first, or they would be lost")
    datadir = datadir or os.path.join("var", "faust", f"{namespace}-{recipe.version}-{os.getpid()}")
    os.makedirs(datadir, exist_ok=True)  # Faust creates only the last level
    app = create_app(recipe, bootstrap, namespace=namespace, datadir=datadir, raw_topic=raw_topic, ingest=ingest,
                     compression=compression)
    if start_exporter():
        start_lag_probe(bootstrap, topics.worker_group(recipe.version), [topics.raw, topics.keyed])
    loglevel = loglevel.upper()  # logging knows only upper-case names
    logging.basicConfig(level=loglevel)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
