"""Options and helpers shared by the CLI modules."""
from __future__ import annotations

import os

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
    from schemas.recipe import RecipeError, load_recipe

    try:
        return load_recipe(path)
    except RecipeError as exc:
        raise click.ClickException(str(exc)) from None
