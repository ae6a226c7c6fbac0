"""Replay: rerun a recipe over a retained range of the raw topic (or its
archive) into a shard set of its own, without touching the live pipeline.

A replay runs under its own namespace (topics ``foundry.replay-<version>-<range>.*``,
where ``<range>`` hashes the raw topic and offset range), its own consumer groups
and its own output folder ``<out>/replay-<version>-<range>/<version>/``; rerunning
the same replay resumes it. It reads the range in canonical order
(``streams/replay_feeder.py``), shards close only at bounds and at the end of
the range, and so the same raw input and recipe give byte-identical shards and
manifests, whatever the number of workers and however often a replay was
interrupted and resumed. The dedup filter of a replay starts empty: a replay
answers "what would this recipe make of this range", and a filter carried
over from the live pipeline would make the answer depend on what ran before.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from iolayer.topics_admin import create_topics
from schemas.recipe import Recipe
from foundry.run import ServiceSet, count_rows, output_dir, row_count
from schemas import Topics
from streams.raw_range import check_retained, parse_bound, read_archive_range, read_topic_range
from streams.replay_feeder import ReplayFeeder
from streams.stages.tokenizer_training import train_tokenizer
from streams.stages.validate import Validator
from iolayer.ranges import committed, watermarks


@dataclass
class ReplaySummary:
    namespace: str
    recipe_version: str
    out_dir: str
    raw_messages: int
    sharded: int
    rejected: int
    tokens: int
    shards: int
    seconds: float


class ReplayPlan:
    """Where a replay reads from, where it writes, and how far it has got."""

    def __init__(self, bootstrap: str, recipe: Recipe, *, start: str | None = None, until: str | None = None,
                 source: str = "topic", archive: str | Path | None = None, out_root: str | Path = "out",
                 raw_topic: str = "foundry.raw", namespace: str | None = None, dedup_from: str | None = None):
        self.bootstrap, self.source, self.archive, self.raw_topic = bootstrap, source, archive, raw_topic
        self.out_root = Path(out_root)
        # Timing settings do not change the version; a replay closes shards only at bounds.
        recipe = recipe.model_copy(update={"shards": recipe.shards.model_copy(update={"timeout_s": None})})
        if source == "topic":
            self.start = parse_bound(start, bootstrap, raw_topic, end=False)
            self.end = parse_bound(until, bootstrap, raw_topic, end=True)
            check_retained(bootstrap, raw_topic, self.start)
        elif source == "archive":
            if archive is None:
                raise ValueError("--source archive needs --archive DIR")
            self.start = _offsets(start) if start not in (None, "beginning") else {}
            self.end = _offsets(until) if until not in (None, "end") else None
        else:
            raise ValueError(f"unknown source {source!r}: topic or archive")
        if not recipe.tokenizer.model:
            # Deterministic: the same range head gives the same tokenizer.
            texts = (m.value.decode("utf-8", "replace") for m in self.messages())
            model = train_tokenizer(_texts(texts), self.out_root / "tokenizers", vocab_size=recipe.tokenizer.vocab_size,
                                    model_type=recipe.tokenizer.model_type, max_mb=recipe.tokenizer.train_mb)
            recipe = recipe.with_tokenizer(model)
        self.recipe = recipe
        # The same recipe over the same range is the same replay (rerunning it resumes
        # it); another range or raw topic is another replay with its own topics.
        rng = json.dumps([raw_topic, source, str(archive), sorted(self.start.items()),
                          sorted(self.end.items()) if self.end is not None else None, dedup_from])
        self.dedup_from = dedup_from
        self.namespace = namespace or f"replay-{recipe.version}-{hashlib.sha256(rng.encode()).hexdigest()[:6]}"
        self.topics = Topics(namespace=self.namespace, partitions=recipe.partitions, raw_name=raw_topic)
        self.out = output_dir(self.out_root, self.namespace, recipe)
        self.state = self.out / "_replay"

    def messages(self):
        if self.source == "topic":
            return read_topic_range(self.bootstrap, self.raw_topic, self.start, self.end)
        return read_archive_range(self.archive, self.start, self.end)

    def total(self) -> int:
        if self.source == "topic":
            return sum(max(0, self.end[p] - self.start.get(p, 0)) for p in self.end)
        return sum(1 for _ in self.messages())


def _offsets(spec: str) -> dict[int, int]:
    out = {}
    for part in spec.split(","):
        p, off = part.split(":")
        out[int(p)] = int(off)
    return out


def _texts(values):
    from schemas import RawDocument, SchemaError

    for v in values:
        try:
            doc = RawDocument.decode(v.encode())
        except SchemaError:
            continue
        if doc.defect is None and doc.text:
            yield doc.text


def _upstream_drained(bootstrap: str, topics: Topics, group: str) -> dict[int, int] | None:
    """The tokenized topic's end offsets once the agents have consumed everything, else None."""
    # The dedup agent (sequenced) feeds the curate agent (keyed): both hops must be consumed.
    for topic in (topics.sequenced, topics.keyed):
        marks = watermarks(bootstrap, topic)
        done = committed(bootstrap, group, topic, list(marks))
        if any(done.get(p, 0) < high for p, (_, high) in marks.items()):
            return None
    return {p: high for p, (_, high) in watermarks(bootstrap, topics.tokenized).items()}


def run_replay(plan: ReplayPlan, *, workers: int = 1, timeout: float = 3600.0, echo=print,
               show_progress: bool = True) -> ReplaySummary:
    from tqdm import tqdm

    recipe, topics, out = plan.recipe, plan.topics, plan.out
    create_topics(plan.bootstrap, topics)
    plan.state.mkdir(parents=True, exist_ok=True)
    if plan.dedup_from and not (plan.state / "imported").exists():
        from streams.partition_state import PartitionStateStore
        from streams.stages.dedup import BloomDeduper

        store = PartitionStateStore(plan.bootstrap, topics.sequenced, topics.dedup_snapshots, state_key=recipe.version,
                                    make_stages=lambda: [BloomDeduper(recipe.dedup.capacity, recipe.dedup.fp_rate)])
        n = store.import_filters(Topics(namespace=plan.dedup_from).dedup_snapshots, recipe.partitions)
        if n == 0:
            raise RuntimeError(f"namespace {plan.dedup_from!r} has no dedup snapshots to start from")
        (plan.state / "imported").write_text(str(n))
        echo(f"dedup filter: started from {plan.dedup_from}'s newest snapshots ({n} partitions)")
    recipe_path = out / "recipe.yaml"
    recipe.save(recipe_path)
    total = plan.total()
    echo(f"replay {plan.namespace}: {total} raw messages -> {out}")
    if plan.source == "topic":
        fmt = lambda d: ",".join(f"{p}:{o}" for p, o in sorted(d.items()))  # noqa: E731
        echo(f"range: --from {fmt(plan.start)} --until {fmt(plan.end)} (pass these to resume after an interruption)")
    for f in ("stop-shards.json", "stop-ledger.json"):
        (plan.state / f).unlink(missing_ok=True)  # a resumed replay decides the end again
    services = ServiceSet(plan.bootstrap, recipe_path, plan.namespace, plan.out_root, plan.out_root / "logs",
                          plan.raw_topic, extra={
                              "worker": ["--skip-ingest"],
                              "shard-writer": ["--stop-at-file", str(plan.state / "stop-shards.json")],
                              "ledger": ["--stop-at-file", str(plan.state / "stop-ledger.json")]})
    t0 = time.monotonic()
    for i in range(workers):
        services.start("worker", suffix=str(i) if i else "")
    services.start("shard-writer")
    services.start("ledger")
    try:
        feeder = ReplayFeeder(plan.bootstrap, topics, Validator(recipe.version, recipe.validate_.max_bytes,
                                                                recipe.validate_.min_chars),
                              plan.state / "feeder.json", raw_topic_name=plan.raw_topic)
        errors: list[BaseException] = []

        def feed() -> None:
            try:
                feeder.feed(plan.messages())
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                errors.append(exc)

        feeding = threading.Thread(target=feed, name="replay-feeder", daemon=True)
        feeding.start()
        group = topics.worker_group(recipe.version)
        deadline = time.monotonic() + timeout
        bar = tqdm(total=total, desc="replay", unit="doc", disable=not show_progress)
        stop = None
        while True:
            if errors:
                raise errors[0]
            services.check_alive(allow_exit={"shard-writer", "ledger"})
            done = row_count(out / "manifest") + row_count(out / "ledger")
            bar.update(done - bar.n)  # rows land as parts close, so the bar moves in steps
            if stop is None and not feeding.is_alive():
                stop = _upstream_drained(plan.bootstrap, topics, group)
                if stop is not None:
                    (plan.state / "stop-shards.json").write_text(json.dumps(stop))
                    ledger_end = {p: hi for p, (_, hi) in watermarks(plan.bootstrap, topics.rejections).items()}
                    (plan.state / "stop-ledger.json").write_text(json.dumps(ledger_end))
            if stop is not None and all(services.procs[n].poll() is not None for n in ("shard-writer", "ledger")):
                services.check_alive(allow_exit={"shard-writer", "ledger"})
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"replay not finished after {timeout}s ({done} of {total} documents)")
            time.sleep(1.0)
        bar.update(row_count(out / "manifest") + row_count(out / "ledger") - bar.n)
        bar.close()
    finally:
        services.stop()
    sharded, _, tokens = count_rows(out / "manifest")
    rejected = row_count(out / "ledger")
    if sharded + rejected != total:
        raise RuntimeError(f"replay accounted for {sharded + rejected} of {total} raw messages")
    return ReplaySummary(plan.namespace, recipe.version, str(out), total, sharded, rejected, tokens,
                         len(list((out / "shards").glob("*.tar"))), round(time.monotonic() - t0, 2))
