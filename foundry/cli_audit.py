"""`foundry audit`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from foundry.cli_common import DEFAULT_BOOTSTRAP


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--bootstrap", default=DEFAULT_BOOTSTRAP, show_default=True)
@click.option("--raw-topic", default="foundry.raw", show_default=True)
@click.option("--from", "start", default="beginning", show_default=True,
              help="beginning | ISO time | P:OFFSET,P:OFFSET (per partition).")
@click.option("--until", default=None, help="end | ISO time | P:OFFSET,...  (default: the end now).")
@click.option("--archive", "archive_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="Read the raw documents from this archive (`foundry archive`) instead of the topic.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def audit(out_dir, bootstrap, raw_topic, start, until, archive_dir, as_json) -> None:
    """Check that every raw document of the range is in exactly one shard or one ledger row of
    OUT_DIR (out/<namespace>/<recipe version>); exit status 1 if any is missing or doubled."""
    from foundry.audit import audit_output
    from iolayer.publisher import BrokerUnavailable, check_broker

    try:
        if archive_dir is None:
            check_broker(bootstrap, timeout=5)
        report = audit_output(Path(out_dir), bootstrap=bootstrap, raw_topic=raw_topic, start=start, until=until,
                              archive=archive_dir)
    except (BrokerUnavailable, FileNotFoundError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if as_json else report.text())
    sys.exit(0 if report.ok else 1)
