"""Faust wiring: three agents, each a thin loop around stages.

    raw --ingest--> sequenced (1 partition) --dedup--> keyed (by content hash) --curate+tokenize--> tokenized
                \\__________________________ rejections <___________/___________________/

The dedup agent runs the stateful stages (bloom filter, near-duplicates) over
the one partition of the sequenced topic, so every document is judged against
every document before it in one order: near-duplicates have different content
hashes and, spread over partitions, were only found when they met in the same
one (recall fell with the partition count). One order also keeps the verdicts a
function of that log, whatever the worker count, which replays and rebuilds
need. It bounds that stage to one core; the curate agent (stateless operators
and the tokenizer, most of the CPU) runs on every partition of the keyed topic.
Cost and design: docs/curation.md, streams/stages/NEAR_DEDUP.md.

Processing guarantee is at-least-once with acks after a whole batch is sent;
the stages are deterministic and the sinks skip redelivered documents, so a
crash anywhere yields each document exactly once in the shards or the ledger
(Faust's transactional mode has open bugs; see the README).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import faust

from schemas.recipe import Recipe
from schemas import CuratedDocument, RawDocument, Rejection, SchemaError, Topics
from schemas.raw_ref import format_raw_ref
from streams.faust_app import make_faust_app
from streams.partition_state import PartitionState, PartitionStateStore
from streams.stages.base import Outcome
from streams.stages.dedup import BloomDeduper
from streams.stages.registry import build_stage
from streams.stages.tokenize import SentencePieceTokenizer
from streams.stages.validate import Validator
from streams.topic_identity import topic_incarnation
from telemetry import metrics

log = logging.getLogger(__name__)


def _undecodable(msg, err: SchemaError, stage: str, recipe_version: str, raw_ref: str | None = None) -> Rejection:
    # No id can be read from the message itself: its coordinates are its id.
    coords = f"{msg.topic}:{msg.partition}:{msg.offset}"
    return Rejection(id=coords, reason=err.reason.value, stage=stage, recipe_version=recipe_version,
                     detail=err.detail[:500], raw_ref=raw_ref or coords)


def create_app(recipe: Recipe, bootstrap: str, namespace: str = "live", datadir: str = "var/faust",
               raw_topic: str = "foundry.raw", ingest: bool = True, compression: str = "none") -> faust.App:
    """``ingest=False`` leaves out the first agent: a replay feeds the keyed topic
    itself, in a canonical order, so that its output does not depend on timing.
    ``compression``: the producer's codec (``none``, ``zstd``, ``lz4``, ``gzip``, ``snappy``)."""
    if not recipe.tokenizer.model:
        raise ValueError("the worker needs a resolved recipe with a tokenizer model")
    topics = Topics(namespace=namespace, partitions=recipe.partitions, raw_name=raw_topic)
    version = recipe.version
    app = make_faust_app(
        topics.worker_group(version), bootstrap, datadir=datadir, partitions=recipe.partitions,
        producer_max_request_size=64 << 20,
        consumer_max_fetch_size=64 << 20,
        broker_commit_every=1000,
        stream_buffer_maxsize=4096,
        # Without linger every send is its own produce request; batching them is most of our throughput.
        producer_linger=0.02,
        producer_max_batch_size=1 << 20,
        # Compressing costs CPU, which a worker is short of beside a local broker: with zstd the
        # workers used ~9 % more CPU per MB; aiokafka's lz4 (level 9) was a quarter of a minimal
        # worker's CPU. Across a network zstd is the better trade (README, "Pipeline benchmark").
        producer_compression_type=None if compression == "none" else compression,
    )
    raw_t = app.topic(topics.raw, key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw")
    sequenced_t = app.topic(topics.sequenced, key_type=bytes, value_type=bytes, value_serializer="raw",
                            key_serializer="raw")
    keyed_t = app.topic(topics.keyed, key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw")
    tokenized_t = app.topic(topics.tokenized, key_type=bytes, value_type=bytes, value_serializer="raw",
                            key_serializer="raw")
    rejections_t = app.topic(topics.rejections, key_type=bytes, value_type=bytes, value_serializer="raw",
                             key_serializer="raw")
    batch, within = recipe.batch.size, recipe.batch.within_s
    # One thread: stages run off the event loop (onnxruntime and sentencepiece
    # release the GIL), one batch at a time so per-partition order holds.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stages")

    async def run(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def emit(outcomes: list[Outcome], ok_topic, partitions: list[int | None] | None = None) -> None:
        """Send kept documents on, rejections to the ledger. A kept document stays
        in the partition number given (``partitions``: the one it came from, or the one
        its content hash names), so each partition's order holds from the sequenced
        topic to the shards: that is what makes a replay's shards independent of
        timing and of the number of workers."""
        futs = []
        for i, o in enumerate(outcomes):
            if isinstance(o, Rejection):
                futs.append(await rejections_t.send(key=o.id.encode(), value=o.encode()))
            else:
                futs.append(await ok_topic.send(
                    key=o.content_hash.encode(), value=o.encode(),
                    partition=partitions[i] if partitions is not None else None,
                    headers={"doc_id": o.id.encode(), "raw_ref": (o.meta.get("raw_ref") or "").encode()}))
        await asyncio.gather(*futs)  # delivered before this batch is acked

    validator = Validator(version, recipe.validate_.max_bytes, recipe.validate_.min_chars)
    # Raw refs name the topic and its incarnation: offsets of another raw topic, or of this one
    # deleted and created again, are other messages, not redeliveries (PartitionState.admit).
    raw_incarnation = topic_incarnation(bootstrap, topics.raw) if ingest else None

    async def ingest_agent(stream):
        async for events in stream.take_events(batch, within=within):
            outcomes: list[Outcome] = []
            # The time budget_prune judges by: kept with the document, so a redelivery
            # downstream is judged under the same budget version (docs/exactly-once.md).
            ingested_at = round(time.time(), 3)
            for ev in events:
                try:
                    ref = format_raw_ref(ev.message.topic, ev.message.partition, ev.message.offset, raw_incarnation)
                    raw = RawDocument.decode(ev.value)
                    raw.meta["raw_ref"] = ref
                    raw.meta["ingested_at"] = ingested_at
                    outcomes.append(validator(raw))
                except SchemaError as err:
                    outcomes.append(_undecodable(ev.message, err, "ingest", version, ref))
            metrics.record_outcomes("ingest", outcomes)
            await emit(outcomes, sequenced_t, [0] * len(outcomes))

    if ingest:
        app.agent(raw_t, name="ingest")(ingest_agent)

    stateful_specs = [s for s in recipe.curation if s["op"] in STATEFUL_OPS]
    stateless_specs = [s for s in recipe.curation if s["op"] not in STATEFUL_OPS]
    # What an operator may take from the worker (budget_prune: its budgets topic). build_stage
    # fills it into a copy of the entry: the recipe, and so its version, stays as written.
    context = {"bootstrap": bootstrap, "namespace": namespace}

    def make_stateful():
        d = recipe.dedup
        return [BloomDeduper(d.capacity, d.fp_rate)] + [build_stage(s, context) for s in stateful_specs]

    store = PartitionStateStore(bootstrap, topics.sequenced, topics.dedup_snapshots,
                                state_key=f"{version}", make_stages=make_stateful,
                                snapshot_every=recipe.dedup.snapshot_every)
    states: dict[int, PartitionState] = {}

    def dedup_partition(partition: int, items: list[tuple[int, CuratedDocument | None]]) -> list[Outcome]:
        """``items`` are (offset, document or None if undecodable) of one partition, in order."""
        outcomes: list[Outcome] = []
        state = states.get(partition)
        run: list[CuratedDocument] = []

        def flush_run() -> None:
            if run:
                outcomes.extend(state.process(run))
                run.clear()

        for offset, doc in items:
            if state is None or state.next_offset != offset:
                flush_run()
                # A gap or a step back: we were (re)assigned this partition or
                # restarted. Rebuild exactly the state before this offset.
                state = states[partition] = store.rebuild(partition, offset)
            if doc is not None and state.admit(doc.meta.get("raw_ref")):
                # Undecodable messages and redeliveries change no state (rebuild skips them too).
                run.append(doc)
            state.next_offset = offset + 1
            state.since_snapshot += 1
        flush_run()
        store.maybe_snapshot(partition, state)
        metrics.observe_partition_state(partition, state.stages)
        return outcomes

    curation = [build_stage(s, context) for s in stateless_specs]
    tokenizer = SentencePieceTokenizer(recipe.tokenizer.model)
    n_keyed = recipe.partitions

    def keyed_partition(o: Outcome) -> int | None:
        # A fixed function of the content hash (hex), not the client's partitioner: the same
        # document lands in the same keyed partition whatever library or version sends it.
        return int(o.content_hash[:15], 16) % n_keyed if isinstance(o, CuratedDocument) else None

    @app.agent(sequenced_t, name="dedup")
    async def dedup(stream):
        async for events in stream.take_events(batch, within=within):
            by_part: dict[int, list] = defaultdict(list)
            outcomes: list[Outcome] = []
            for ev in events:
                try:
                    doc = CuratedDocument.decode(ev.value)
                except SchemaError as err:
                    outcomes.append(_undecodable(ev.message, err, "dedup", version))
                    doc = None
                by_part[ev.message.partition].append((ev.message.offset, doc))
            for partition, items in by_part.items():
                outcomes += await run(dedup_partition, partition, items)
            # Only the final outcomes count here; the curate agent counts what this one kept.
            metrics.record_outcomes("curate", [o for o in outcomes if isinstance(o, Rejection)])
            await emit(outcomes, keyed_t, [keyed_partition(o) for o in outcomes])

    def curate_docs(docs: list[CuratedDocument]) -> list[Outcome]:
        return PartitionState(curation + [tokenizer]).process(docs)

    @app.agent(keyed_t, name="curate")
    async def curate(stream):
        async for events in stream.take_events(batch, within=within):
            by_part: dict[int, list[CuratedDocument]] = defaultdict(list)
            outcomes: list[Outcome] = []
            parts: list[int | None] = []
            for ev in events:
                try:
                    by_part[ev.message.partition].append(CuratedDocument.decode(ev.value))
                except SchemaError as err:
                    outcomes.append(_undecodable(ev.message, err, "curate", version))
                    parts.append(None)
            for partition, docs in by_part.items():  # each partition's documents stay in order
                res = await run(curate_docs, docs)
                outcomes += res
                parts += [partition] * len(res)
            metrics.record_outcomes("curate", outcomes)
            await emit(outcomes, tokenized_t, parts)

    return app


# Operators whose verdict depends on earlier documents: they live in the dedup
# agent's state (the sequenced topic's one partition) and are rebuilt from its log with it.
STATEFUL_OPS = {"near_dedup"}

