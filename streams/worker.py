"""Entry point of a stream worker process: ``foundry worker`` runs this."""
from __future__ import annotations

import logging
import os

import faust

from foundry.recipe import load_recipe
from streams.app import create_app


def run_worker(recipe_path: str, bootstrap: str, namespace: str = "live", datadir: str | None = None,
               loglevel: str = "WARNING", raw_topic: str = "foundry.raw", ingest: bool = True) -> None:
    recipe = load_recipe(recipe_path)
    datadir = datadir or os.path.join("var", "faust", f"{namespace}-{recipe.version}-{os.getpid()}")
    os.makedirs(datadir, exist_ok=True)  # Faust creates only the last level
    app = create_app(recipe, bootstrap, namespace=namespace, datadir=datadir, raw_topic=raw_topic, ingest=ingest)
    logging.basicConfig(level=loglevel)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
