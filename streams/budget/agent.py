"""The budget agent: a Faust app that turns the trainer's value scores into token budgets.

    values (ValueScore)  ──┐
                           ├─► budget agent ──► <ns>.budgets (BudgetUpdate, compacted, keys <ns> and <ns>@v<n>)
    rejections (dups) ─────┘        │
                                    └─► table "budget-stats" (one entry per source / bucket + __meta__)

The agent buffers ValueScores (and duplicate / near-duplicate rejections, for the flood
guard) into the allocator's window; when ``window_tokens`` scored tokens have arrived, or
``window_s`` seconds have passed with something buffered, it closes the window
(:meth:`~streams.budget.allocator.BudgetAllocator.close_window`), writes the changed
statistics to the table and sends the BudgetUpdate, effective ``LEAD_S`` from now (under a
history key and the namespace: see ``budget_messages``); the batch's offsets are acknowledged
only after the update is delivered.

State: a Faust Table (``store='memory://'``) whose changelog topic
``foundry-budget-<ns>-budget-stats-changelog`` (compacted, as many partitions as the values
topic) is created here before the app starts, since topics are not declared by the apps. Table
keys go to changelog partition ``crc32(key) % partitions``, so each key has a single
history. On a restart Faust rebuilds the table from the changelog before the agent sees its
first event; the allocator resumes from it (statistics, weights, budget version), not from
zero. Observations of the window that was open when the process died are lost (their offsets
may be committed): at most one window's worth.

Run exactly one budget agent per namespace: the allocation needs every partition's scores.
"""
from __future__ import annotations

import logging
import time
import zlib
from typing import Any

from iolayer.topics_admin import TopicPlan, ensure_topics, partition_counts, topic_partitions
from schemas import BudgetUpdate, Rejection, SchemaError, Topics, ValueScore
from streams.budget.allocator import AllocatorConfig, BudgetAllocator
from streams.budget.reader import GUARD_S, LEAD_S, budget_messages
from streams.faust_app import make_faust_app, run_faust_worker
from telemetry import metrics

log = logging.getLogger(__name__)

TABLE = "budget-stats"


def app_id(namespace: str) -> str:
    return f"foundry-budget-{namespace}"


def changelog_topic(namespace: str) -> str:
    return f"{app_id(namespace)}-{TABLE}-changelog"


def ensure_changelog(bootstrap: str, namespace: str, partitions: int, *, replication: int | None = None,
                     timeout: float = 30.0) -> str:
    """Create the table's changelog topic (compacted) if it is missing; returns its name.
    ``replication`` None: the cluster's default."""
    name = changelog_topic(namespace)
    ensure_topics(bootstrap, [TopicPlan(name, partitions, {"cleanup.policy": "compact"})],
                  replication=replication, timeout=timeout)
    found = partition_counts(bootstrap, [name], timeout=timeout)[name]  # a new topic shows after a moment
    if found != partitions:
        raise RuntimeError(f"{name} has {found} partitions, the values topic {partitions}")
    return name


def _key_hash_table_class():
    import faust

    class KeyHashTable(faust.Table):
        """A table whose keys go to changelog partition ``crc32(key) % partitions``.

        Faust's default writes a key to the partition of the event being processed; the budget
        statistics are global (every event updates them), so one key would be spread over all
        partitions and a recovery could apply an older copy last. A fixed partition per key gives
        each key a single, ordered history, and lets the table be written outside a stream event.
        """

        def partition_for_key(self, key):  # noqa: ANN001, ANN201 - faust's signature
            return zlib.crc32(str(key).encode("utf-8")) % int(self.partitions)

    return KeyHashTable


def _KeyHashTable(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - a class made lazily (faust is heavy)
    return _key_hash_table_class()(*args, **kwargs)


def create_budget_app(bootstrap: str, namespace: str = "live", *, config: AllocatorConfig | None = None,
                      window_tokens: int = 200_000, window_s: float = 60.0, batch: int = 1000,
                      within_s: float = 1.0, datadir: str = "var/faust-budget",
                      use_rejections: bool = True) -> Any:
    """The Faust app of the budget agent (topics must exist; the changelog is created here)."""
    topics = Topics(namespace=namespace)
    n_values = topic_partitions(bootstrap, topics.values)
    ensure_changelog(bootstrap, namespace, n_values)
    app = make_faust_app(app_id(namespace), bootstrap, datadir=datadir, partitions=n_values,
                         table_cleanup_interval=3600.0)
    names = [topics.values] + ([topics.rejections] if use_rejections else [])
    if use_rejections and topic_partitions(bootstrap, topics.rejections) != n_values:
        raise RuntimeError("the values and rejections topics must have the same partition count")
    source = app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    budgets_t = app.topic(topics.budgets, key_type=bytes, value_type=bytes, key_serializer="raw",
                          value_serializer="raw")
    # keys: str (raw UTF-8); values: JSON dicts (the app's default value serializer)
    table = app.tables.add(_KeyHashTable(app, name=TABLE, default=None, beacon=app.tables.beacon,
                                         partitions=n_values, key_type=str))
    state: dict[str, Any] = {"alloc": None, "last_close": time.monotonic(), "bad": 0}
    app.budget_state = state  # for tests and introspection
    app.budget_table = table

    def allocator() -> BudgetAllocator:
        if state["alloc"] is None:
            items = {k: v for k, v in table.items() if v is not None}
            state["alloc"] = BudgetAllocator.from_table(items, config)
            a = state["alloc"]
            log.info("budget agent resumed: version %d, window %d, %d keys", a.version, a.window, len(a.stats))
        return state["alloc"]

    async def close_window(alloc: BudgetAllocator) -> None:
        update = alloc.close_window()
        state["last_close"] = time.monotonic()
        if update is None:
            return
        for key, value in alloc.table_items(changed_only=True):
            table[key] = value
        stamp_effective(update, state)
        for key, value in budget_messages(namespace, update):
            fut = await budgets_t.send(key=key, value=value)
            await fut  # delivered before this batch's offsets are acknowledged
        late = time.time() - (update.effective_at - LEAD_S)
        if late > LEAD_S - GUARD_S:
            # A worker may have judged documents of the update's time without it.
            log.error("budget v%d took %.1f s to deliver (more than %.1f s): documents ingested near %.1f may "
                      "be judged differently on a redelivery", update.budget_version, late, LEAD_S - GUARD_S,
                      update.effective_at)
        metrics.record_budget(update)
        rep = alloc.report()
        log.info("budget v%d: %d keys, flagged %s", update.budget_version, len(update.budgets), update.flagged)
        state["last_report"] = rep

    @app.agent(source, name="budget")
    async def budget_agent(stream):
        async for events in stream.take_events(batch, within=within_s):
            alloc = allocator()
            for ev in events:
                try:
                    if ev.message.topic == topics.values:
                        alloc.observe(ValueScore.decode(ev.value))
                    else:
                        rej = Rejection.decode(ev.value)
                        alloc.observe_rejection(rej)
                except SchemaError:
                    state["bad"] += 1
            due = alloc.pending_tokens >= window_tokens or (
                alloc.pending_docs > 0 and time.monotonic() - state["last_close"] >= window_s)
            if due:
                await close_window(alloc)

    @app.timer(max(1.0, window_s / 4))
    async def close_idle_window() -> None:
        alloc = state["alloc"]
        if alloc is not None and alloc.pending_docs > 0 and time.monotonic() - state["last_close"] >= window_s:
            await close_window(alloc)

    return app


def stamp_effective(update: BudgetUpdate, state: dict[str, Any], lead_s: float = LEAD_S) -> None:
    """Set ``update.effective_at`` to ``lead_s`` from now, and after the previous update's: the
    workers have it before any document it applies to (streams/budget/reader.py)."""
    eff = round(time.time() + lead_s, 3)
    last = state.get("last_effective")
    if last is not None and eff <= last:
        eff = round(last + 0.001, 3)
    update.effective_at = state["last_effective"] = eff


def run_budget_agent(bootstrap: str, namespace: str = "live", *, loglevel: str = "WARNING",
                     **kwargs: Any) -> None:
    """Run the agent in the foreground until SIGTERM / SIGINT (``foundry budget``)."""
    import os

    datadir = kwargs.pop("datadir", None) or os.path.join("var", "faust-budget", f"{namespace}-{os.getpid()}")
    os.makedirs(datadir, exist_ok=True)
    app = create_budget_app(bootstrap, namespace, datadir=datadir, **kwargs)
    metrics.start_exporter()
    run_faust_worker(app, loglevel)

