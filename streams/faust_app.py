"""The one Faust app factory and worker runner: the stream worker and the budget agent
share their settings, the log-quieting task and the command-line workaround from here.

Faust is imported lazily: importing this module costs nothing until an app is made.
"""
from __future__ import annotations

import logging
import sys
from typing import Any

from iolayer.kafka_config import faust_credentials


def make_faust_app(app_id: str, bootstrap: str, *, datadir: str, partitions: int, **settings: Any) -> Any:
    """A Faust app with the project's settings (``settings`` adds or overrides): topics are
    never declared by Faust (they come from `foundry topics create` or the caller),
    offsets are committed at least once, no web server, credentials from the environment."""
    import faust

    base: dict[str, Any] = dict(
        broker=f"kafka://{bootstrap}",
        broker_credentials=faust_credentials(),
        store="memory://",
        datadir=datadir,
        processing_guarantee="at_least_once",
        topic_partitions=partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        # A killed worker's partitions move to the survivors (or its restart) after this.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        broker_commit_interval=1.0,
    )
    app = faust.App(app_id, **{**base, **settings})

    @app.task
    async def quiet_hot_path_logs() -> None:
        # Faust logs every send at DEBUG; with the worker's handlers that costs
        # ~5% of the worker's CPU even when nothing is shown.
        for name in ("faust", "aiokafka", "mode"):
            logging.getLogger(name).setLevel(max(logging.getLogger().level, logging.INFO))

    return app


def run_faust_worker(app: Any, loglevel: str = "WARNING") -> None:
    """Run ``app`` in the foreground until SIGTERM / SIGINT."""
    import faust

    loglevel = loglevel.upper()  # logging knows only upper-case names
    logging.basicConfig(level=loglevel)
    sys.argv = [sys.argv[0], "worker"]  # Faust's worker parses argv; keep ours out of it
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
