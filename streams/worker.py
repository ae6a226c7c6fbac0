"""Entry point of a stream worker process: ``foundry worker`` runs this."""
from __future__ import annotations

import os

from iolayer.kafka_config import confluent_config
from schemas.recipe import load_recipe
from schemas import Topics
from streams.app import create_app
from streams.faust_app import run_faust_worker
from streams.namespace_guard import refuse_another_recipe
from telemetry.metrics import start_exporter, start_lag_probe


def run_worker(recipe_path: str, bootstrap: str, namespace: str = "live", datadir: str | None = None,
               loglevel: str = "WARNING", raw_topic: str = "foundry.raw", ingest: bool = True,
               compression: str = "none") -> None:
    recipe = load_recipe(recipe_path)
    topics = Topics(namespace=namespace, partitions=recipe.partitions, raw_name=raw_topic)
    refuse_another_recipe(bootstrap, topics, recipe.version)
    datadir = datadir or os.path.join("var", "faust", f"{namespace}-{recipe.version}-{os.getpid()}")
    os.makedirs(datadir, exist_ok=True)  # Faust creates only the last level
    app = create_app(recipe, bootstrap, namespace=namespace, datadir=datadir, raw_topic=raw_topic, ingest=ingest,
                     compression=compression)
    if start_exporter():
        start_lag_probe(bootstrap, topics.worker_group(recipe.version), [topics.raw, topics.sequenced, topics.keyed],
                        client_config=confluent_config(bootstrap))
    run_faust_worker(app, loglevel)
