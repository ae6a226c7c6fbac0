"""`foundry replay`, `foundry archive`, `foundry diff`."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from foundry.cli_common import DEFAULT_BOOTSTRAP, _recipe


@click.command()
@click.option("--bootstrap", default=DEFAULT_BOOTSTRAP, show_default=True)
@click.option("--recipe", "recipe_path", default=None, help="Recipe YAML (default: the shipped one).")
@click.option("--from", "start", default="beginning", show_default=True,
              help="beginning | ISO time | P:OFFSET,P:OFFSET (per partition).")
@click.option("--until", default=None, help="end | ISO time | P:OFFSET,...  (default: the end when the replay starts).")
@click.option("--source", type=click.Choice(["topic", "archive"]), default="topic", show_default=True)
@click.option("--archive", "archive_dir", default=None, help="Archive folder for --source archive.")
@click.option("--raw-topic", default="foundry.raw", show_default=True)
@click.option("--namespace", default=None, help="Default: replay-<recipe version>.")
@click.option("--workers", default=1, show_default=True, help="Stream worker processes.")
@click.option("--out", "out_root", default="out", show_default=True)
@click.option("--timeout", default=3600.0, show_default=True)
@click.option("--dedup-from", default=None, metavar="NAMESPACE",
              help="Start the exact-dedup filter from NAMESPACE's newest snapshots (default: empty).")
def replay(bootstrap, recipe_path, start, until, source, archive_dir, raw_topic, namespace, workers, out_root,
           timeout, dedup_from) -> None:
    """Rerun a recipe over a range of the raw topic (or archive) into its own shard set."""
    from foundry.replay import ReplayPlan, run_replay
    from streams.raw_range import RangeAgedOut

    try:
        plan = ReplayPlan(bootstrap, _recipe(recipe_path), start=start, until=until, source=source,
                          archive=archive_dir, out_root=out_root, raw_topic=raw_topic, namespace=namespace,
                          dedup_from=dedup_from)
    except (RangeAgedOut, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    summary = run_replay(plan, workers=workers, timeout=timeout, echo=click.echo)
    click.echo(json.dumps(asdict(summary), indent=2))


@click.command()
@click.option("--bootstrap", default=DEFAULT_BOOTSTRAP, show_default=True)
@click.option("--raw-topic", default="foundry.raw", show_default=True)
@click.option("--out", "archive_dir", default="archive", show_default=True)
def archive(bootstrap, raw_topic, archive_dir) -> None:
    """Spill the raw topic to Parquet (date=/source= folders); resumes where it stopped."""
    from foundry.archive import archive_topic

    n = archive_topic(bootstrap, raw_topic, archive_dir)
    click.echo(f"archived {n} raw messages to {archive_dir}")


@click.command()
@click.argument("a")
@click.argument("b")
@click.option("--sample", default=10, show_default=True)
def diff(a, b, sample) -> None:
    """Compare two output folders (out/<namespace>/<version>) or their recipe.yaml files."""
    from foundry.diff import diff_outputs

    def folder(x: str) -> Path:
        p = Path(x)
        return p.parent if p.is_file() else p

    for x in (a, b):
        if not (folder(x) / "manifest").is_dir():
            raise click.ClickException(f"{x}: not an output folder (no manifest/ inside)")
    click.echo(json.dumps(diff_outputs(folder(a), folder(b), sample), indent=2, ensure_ascii=False))
