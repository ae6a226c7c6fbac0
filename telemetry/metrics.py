"""Every Prometheus metric the factory exports, under one naming scheme (``foundry_``).

Each process calls :func:`start_exporter` once; it serves the default registry on
``FOUNDRY_METRICS_PORT`` (unset or 0: no exporter, and the recording helpers stay
cheap counters nobody reads). The helpers take plain values or duck-typed objects
so that this layer imports nothing of the project beyond ``schemas``.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

PREFIX = "foundry_"

# --- documents through the stream stages (stage: ingest | curate) ------------------
DOCS_IN = Counter("foundry_docs_in", "Documents a stage took in", ["stage", "source"])
DOCS_KEPT = Counter("foundry_docs_kept", "Documents a stage passed on", ["stage", "source"])
DOCS_REJECTED = Counter("foundry_docs_rejected", "Documents a stage rejected", ["stage", "source", "reason"])
BYTES_IN = Counter("foundry_bytes_in", "UTF-8 bytes of the documents a stage took in", ["stage", "source"])
KEEP_RATE = Gauge("foundry_keep_rate", "Share of a source's documents the curate stage kept so far", ["source"])
PUBLISHED = Counter("foundry_source_docs_published", "Documents a source published", ["source"])
PUBLISHED_BYTES = Counter("foundry_source_bytes_published", "Input bytes of the documents a source published",
                          ["source"])

# --- operators ------------------------------------------------------------------
OP_LATENCY = Histogram("foundry_operator_batch_seconds", "Wall time of one operator over one batch",
                       ["operator"], buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
OP_CPU = Counter("foundry_operator_cpu_seconds", "CPU seconds (of the calling thread) spent in an operator",
                 ["operator"])
OP_DOCS = Counter("foundry_operator_docs", "Documents an operator processed", ["operator"])

# --- consumers and state ----------------------------------------------------------
LAG = Gauge("foundry_consumer_lag", "Messages not yet consumed (high watermark minus committed offset)",
            ["group", "topic", "partition"])
BLOOM_FILL = Gauge("foundry_bloom_fill_ratio", "Estimated share of set bits in the exact-dedup bloom filter",
                   ["partition"])
BLOOM_FP = Gauge("foundry_bloom_fp_rate_estimate", "Estimated false-positive rate of the bloom filter now",
                 ["partition"])
NEAR_DUP_INDEX = Gauge("foundry_near_dup_index_docs", "Documents in the near-duplicate index", ["partition"])

# --- sinks ----------------------------------------------------------------------
SINK_ROWS = Counter("foundry_sink_rows", "Rows a sink made durable (manifest rows, ledger rows)", ["sink"])
SINK_PARTS = Counter("foundry_sink_parts", "Parts a sink made durable", ["sink"])
SHARDS = Counter("foundry_shards", "WebDataset shards written")
SHARD_BYTES = Counter("foundry_shard_bytes", "Bytes of the shards written")
SHARD_TOKENS = Counter("foundry_shard_tokens", "Tokens in the shards written", ["source"])

# --- trainer ----------------------------------------------------------------------
TRAIN_LOSS = Gauge("foundry_trainer_loss", "Training loss over the last logging window")
HELDOUT_LOSS = Gauge("foundry_trainer_heldout_loss", "Loss on the held-out shards at the last evaluation")
TRAIN_TOKENS_PER_S = Gauge("foundry_trainer_tokens_per_second", "Training tokens per second, last window")
TRAIN_TOKENS = Gauge("foundry_trainer_tokens", "Tokens trained on so far in this run")
TRAIN_STEP = Gauge("foundry_trainer_step", "Optimizer steps so far")
VALUE_SCORE = Gauge("foundry_value_score", "Mean value score of a source's last published batch", ["source"])
VALUE_SCORES = Counter("foundry_value_scores", "Value scores published", ["source"])

# --- budgets ----------------------------------------------------------------------
BUDGET_TOKENS = Gauge("foundry_budget_tokens", "Tokens a source/bucket may keep per window", ["key"])
BUDGET_VERSION = Gauge("foundry_budget_version", "Version of the budgets last published")
FLAGGED = Gauge("foundry_source_flagged", "1 while the budget agent flags a source", ["key"])

# --- processes --------------------------------------------------------------------
PROCESS = Gauge("foundry_process", "1 for the process serving these metrics (its name as a label)",
                ["process"])
RESTARTS = Gauge("foundry_process_restarts", "Restarts of a supervised process", ["process"])

# An unlabelled gauge reads 0 until set; a loss of 0 would be a lie, so they start as NaN ("none yet").
for _g in (TRAIN_LOSS, HELDOUT_LOSS, TRAIN_TOKENS_PER_S, TRAIN_TOKENS, TRAIN_STEP):
    _g.set(math.nan)

_started: dict[str, int] = {}


def process_name() -> str:
    return os.environ.get("FOUNDRY_PROCESS") or f"pid-{os.getpid()}"


def start_exporter(port: int | None = None) -> int | None:
    """Serve the metrics on ``port`` (default: FOUNDRY_METRICS_PORT); None when disabled.
    Idempotent within a process."""
    if "port" in _started:
        return _started["port"]
    if port is None:
        raw = os.environ.get("FOUNDRY_METRICS_PORT", "").strip()
        try:
            port = int(raw) if raw else 0
        except ValueError:
            raise ValueError(f"FOUNDRY_METRICS_PORT must be a port number, not {raw!r}") from None
    if not port:
        return None
    try:
        start_http_server(port, addr=os.environ.get("FOUNDRY_METRICS_ADDR", "127.0.0.1"))
    except OSError as exc:  # a port in use must not take the process down with it: metrics are an extra
        logging.getLogger(__name__).warning("metrics exporter not started on port %s: %s", port, exc)
        return None
    PROCESS.labels(process_name()).set(1)
    # a supervised process is told how often it has been restarted (foundry/supervisor.py)
    record_restarts(process_name(), int(os.environ.get("FOUNDRY_RESTARTS", "0") or 0))
    _started["port"] = port
    return port


def exporter_enabled() -> bool:
    return "port" in _started


_curated: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # source -> [in, kept] at curate


def record_outcomes(stage: str, outcomes: Sequence[Any]) -> None:
    """Count one batch of a stage's outcomes (CuratedDocument or Rejection, one per input)."""
    seen, kept, size = Tally(), Tally(), Tally()
    rejected: Tally = Tally()
    for o in outcomes:
        src = getattr(o, "source", None) or "unknown"
        seen[src] += 1
        reason = getattr(o, "reason", None)
        if reason is None:
            kept[src] += 1
            text = getattr(o, "text", "")
            size[src] += len(text) if text.isascii() else len(text.encode("utf-8", errors="replace"))
        else:
            rejected[(src, reason)] += 1
            size[src] += getattr(o, "n_bytes", None) or 0
    for src, n in seen.items():
        DOCS_IN.labels(stage, src).inc(n)
        DOCS_KEPT.labels(stage, src).inc(kept[src])
        BYTES_IN.labels(stage, src).inc(size[src])
    for (src, reason), n in rejected.items():
        DOCS_REJECTED.labels(stage, src, reason).inc(n)
    if stage == "curate":
        for src, n in seen.items():
            _curated[src][0] += n
            _curated[src][1] += kept[src]
            KEEP_RATE.labels(src).set(_curated[src][1] / _curated[src][0])


@contextmanager
def operator_timer(operator: str, n_docs: int):
    """Time one operator over one batch: wall time (histogram) and this thread's CPU time."""
    t0, c0 = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        OP_LATENCY.labels(operator).observe(time.perf_counter() - t0)
        OP_CPU.labels(operator).inc(time.thread_time() - c0)
        OP_DOCS.labels(operator).inc(n_docs)


def bloom_estimates(bits: int, capacity: int, approx_items: float) -> tuple[float, float]:
    """(fill ratio, false-positive rate) of a bloom filter sized for ``capacity`` with the
    optimal number of hashes, holding about ``approx_items``."""
    if bits <= 0 or capacity <= 0:
        return 0.0, 0.0
    k = max(1, round(bits / capacity * math.log(2)))
    fill = 1.0 - math.exp(-k * max(approx_items, 0.0) / bits)
    return fill, fill ** k


_state_seen: dict[int, float] = {}


def observe_partition_state(partition: int, stages: Iterable[Any], every_s: float = 2.0) -> None:
    """Bloom filter fill and near-dup index size of one partition's stateful stages
    (at most every ``every_s``: estimating the bloom's items counts its bits)."""
    if not exporter_enabled():
        return
    now = time.monotonic()
    if now - _state_seen.get(partition, 0.0) < every_s:
        return
    _state_seen[partition] = now
    for stage in stages:
        bloom = getattr(stage, "bloom", None)
        if hasattr(stage, "fp_rate_estimate"):  # the dedup stage's chain of filters reports its own
            BLOOM_FILL.labels(str(partition)).set(stage.fill)
            BLOOM_FP.labels(str(partition)).set(stage.fp_rate_estimate())
        elif bloom is not None and hasattr(bloom, "size_in_bits"):
            fill, fp = bloom_estimates(bloom.size_in_bits, getattr(stage, "capacity", 0), bloom.approx_items)
            BLOOM_FILL.labels(str(partition)).set(fill)
            BLOOM_FP.labels(str(partition)).set(fp)
        elif getattr(stage, "name", "") == "near_dedup":
            NEAR_DUP_INDEX.labels(str(partition)).set(len(stage))


def record_part(sink: str, rows: int) -> None:
    SINK_PARTS.labels(sink).inc()
    SINK_ROWS.labels(sink).inc(rows)


def record_shard(n_bytes: int, sources: Sequence[str], n_tokens: Sequence[int]) -> None:
    """One shard written: its size, and its documents' sources and token counts."""
    SHARDS.inc()
    SHARD_BYTES.inc(n_bytes)
    by_source: Tally = Tally()
    for src, n in zip(sources, n_tokens):
        by_source[src or "unknown"] += n
    for src, n in by_source.items():
        SHARD_TOKENS.labels(src).inc(n)


def observe_trainer_event(event: str, fields: dict[str, Any]) -> None:
    """The trainer's event log feeds its gauges (``train`` and ``eval`` events)."""
    if event == "train":
        for gauge, key in ((TRAIN_LOSS, "loss"), (TRAIN_TOKENS_PER_S, "tokens_per_s"),
                           (TRAIN_TOKENS, "train_tokens"), (TRAIN_STEP, "step")):
            if isinstance(fields.get(key), (int, float)):
                gauge.set(fields[key])
    elif event == "eval" and isinstance(fields.get("heldout_loss"), (int, float)):
        HELDOUT_LOSS.set(fields["heldout_loss"])
        if isinstance(fields.get("train_tokens"), (int, float)):
            TRAIN_TOKENS.set(fields["train_tokens"])


def record_value_scores(records: Iterable[Any]) -> None:
    sums: dict[str, list[float]] = {}
    for r in records:
        sums.setdefault(r.source, []).append(float(r.value))
    for src, vals in sums.items():
        VALUE_SCORE.labels(src).set(sum(vals) / len(vals))
        VALUE_SCORES.labels(src).inc(len(vals))


def record_budget(update: Any) -> None:
    """A BudgetUpdate the agent published."""
    BUDGET_VERSION.set(update.budget_version)
    for key, tokens in update.budgets.items():
        BUDGET_TOKENS.labels(key).set(tokens)
    flagged = set(update.flagged)
    for key in set(update.budgets) | flagged:
        FLAGGED.labels(key).set(1 if key in flagged else 0)


def record_restarts(process: str, restarts: int) -> None:
    RESTARTS.labels(process).set(restarts)


def start_lag_probe(bootstrap: str, group: str, topics: Sequence[str], interval_s: float = 5.0, *,
                    client_config: Mapping[str, Any] | None = None) -> None:
    """A daemon thread that sets ``foundry_consumer_lag`` for ``group`` every ``interval_s``
    (one long-lived client; nothing when no exporter runs). ``client_config``: the process's
    Kafka client settings (``iolayer.kafka_config.confluent_config``, which this layer may
    not import), so a secured cluster is probed with the same credentials."""
    if not exporter_enabled():
        return
    conf = dict(client_config or {"bootstrap.servers": bootstrap})
    threading.Thread(target=_lag_loop, args=(conf, group, list(topics), interval_s),
                     name="lag-probe", daemon=True).start()


def _lag_loop(conf: dict[str, Any], group: str, topics: list[str], interval_s: float) -> None:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    client = Consumer({**conf, "group.id": group, "enable.auto.commit": False, "log_level": 0})
    while True:
        try:
            md = client.list_topics(timeout=5)
            tps = [TopicPartition(t, p) for t in topics if t in md.topics for p in md.topics[t].partitions]
            for tp in client.committed(tps, timeout=5):
                low, high = client.get_watermark_offsets(tp, timeout=5)
                done = tp.offset if tp.offset >= 0 else low
                LAG.labels(group, tp.topic, str(tp.partition)).set(max(0, high - done))
        except KafkaException:
            pass  # the broker is away; the next round tries again
        time.sleep(interval_s)
