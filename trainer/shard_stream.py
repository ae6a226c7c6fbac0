"""The deterministic sequence of training rows, from an ordered list of shard manifests.

Nothing here knows about Kafka. The input is the run's :class:`ManifestLog`
(shards in the order they were announced); the output is a stream of
:class:`Row` objects (``block_size + 1`` token ids each) that is a pure function
of the seed and that order, and that can be resumed exactly from the
:class:`StreamPosition` carried by every row.

How documents are chosen, one *round* at a time:

* A round takes the next announced shard (all of its documents, "new") and
  ``n_new * (1 - new_fraction) / new_fraction`` documents drawn uniformly from
  the replay buffer (the ``replay_shards`` most recently trained shards, "old").
  The round's documents are shuffled together; then the new shard joins the
  replay buffer and the oldest one leaves it.
* When no new shard has been announced yet, a replay-only round of
  ``idle_round_docs`` documents is trained instead of waiting
  (``replay_when_idle``), so the trainer never idles while data arrives.
  Those rounds depend on timing; every other choice depends only on the seed
  and the manifest order.

Documents are packed back to back, each followed by one boundary token
(id ``vocab_size``), and cut into rows; a document may continue in the next
row. Each row lists the document spans it holds, so the loss of every target
token can be charged to its document.

Training shards are asked of the reader with ``training=True``: with
``data.skip_repeats_k`` set, their documents arrive with repeated token spans cut
out (trainer-side pruning, see :mod:`trainer.shard_reader`). The position counts
what that cut from the new shards of the rounds started so far
(``repeat_tokens_skipped`` of ``repeat_tokens_read``), so the count survives a resume.
"""
from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import numpy as np

from schemas.records import ShardManifest
from trainer.shard_reader import Doc, ShardDocs, ShardError, ShardReader


@dataclass
class ManifestEntry:
    offset: int  # where the announcement sits in the feed (topic offset or line number)
    manifest: ShardManifest


class ManifestLog:
    """The shards announced to one run, in arrival order. Thread-safe.

    The first ``heldout_shards`` announcements become the held-out set; the rest
    are the training shards, numbered 0, 1, 2, ... (their *seq*).
    """

    RECENT_PATHS = 10_000  # announcements remembered for duplicate detection

    def __init__(self, heldout_shards: int = 0):
        self.heldout_target = heldout_shards
        self.recent_paths: OrderedDict[str, None] = OrderedDict()
        self.heldout: list[ManifestEntry] = []
        self._train: dict[int, ManifestEntry] = {}
        self.n_train = 0
        self.closed = False
        self.cond = threading.Condition()

    def append(self, entry: ManifestEntry) -> str:
        """Add an announcement; returns ``"heldout"``, ``"train"`` or ``"duplicate"``.

        The shard writer may announce a shard twice (a crash between the
        announcement and its record of it); a shard path seen among the recent
        announcements is not trained twice.
        """
        with self.cond:
            path = entry.manifest.path
            if path in self.recent_paths:
                return "duplicate"
            self.recent_paths[path] = None
            while len(self.recent_paths) > self.RECENT_PATHS:
                self.recent_paths.popitem(last=False)
            if len(self.heldout) < self.heldout_target:
                self.heldout.append(entry)
                kind = "heldout"
            else:
                self._train[self.n_train] = entry
                self.n_train += 1
                kind = "train"
            self.cond.notify_all()
            return kind

    def close(self) -> None:
        """No more shards will come (a finite stream: tests, benchmarks)."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def train_entry(self, seq: int) -> ManifestEntry:
        with self.cond:
            return self._train[seq]

    def train_entries(self) -> list[ManifestEntry]:
        """The training shards still in the log, in announcement order."""
        with self.cond:
            return [self._train[seq] for seq in sorted(self._train)]

    def heldout_ready(self) -> bool:
        with self.cond:
            return len(self.heldout) >= self.heldout_target

    def prune(self, below: int) -> None:
        """Forget the training shards numbered below ``below`` (see :meth:`StreamPosition.oldest_needed`)."""
        with self.cond:
            for seq in [s for s in self._train if s < below]:
                del self._train[seq]

    def state(self) -> dict[str, Any]:
        with self.cond:
            return {
                "heldout_target": self.heldout_target,
                "heldout": [(e.offset, e.manifest.to_dict()) for e in self.heldout],
                "train": {seq: (e.offset, e.manifest.to_dict()) for seq, e in self._train.items()},
                "n_train": self.n_train,
                "recent_paths": list(self.recent_paths),
            }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "ManifestLog":
        log = cls(state["heldout_target"])
        log.heldout = [ManifestEntry(o, ShardManifest.from_dict(m)) for o, m in state["heldout"]]
        log._train = {int(s): ManifestEntry(o, ShardManifest.from_dict(m)) for s, (o, m) in state["train"].items()}
        log.n_train = state["n_train"]
        log.recent_paths = OrderedDict.fromkeys(state.get("recent_paths", []))
        return log


@dataclass
class StreamPosition:
    """Where the row stream stands, between two rows. Saved in every checkpoint."""

    rng_state: dict[str, Any]  # numpy PCG64 state at the start of the current round
    round_index: int = -1  # -1: no round planned yet
    round_new: int | None = None  # seq of the current round's new shard; None = replay-only round
    next_new: int = 0  # seq of the next shard to train as new
    replay: list[tuple[int, int]] = field(default_factory=list)  # (seq, n_docs), oldest first
    cursor: int = 0  # document index in the current round's plan
    token_offset: int = 0  # tokens of that document already emitted (the boundary token counts)
    skipped_shards: list[str] = field(default_factory=list)
    repeat_tokens_read: int = 0  # tokens of the new shards' documents, as read (before skip_repeats)
    repeat_tokens_skipped: int = 0  # of those, cut out as repeated spans (data.skip_repeats_k)

    def oldest_needed(self) -> int:
        """The oldest training shard this position (or any later one) still reads."""
        seqs = [s for s, _ in self.replay] + [self.next_new]
        if self.round_new is not None:
            seqs.append(self.round_new)
        return min(seqs)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StreamPosition":
        d = copy.deepcopy(d)
        d["replay"] = [tuple(x) for x in d.get("replay", [])]
        return cls(**d)


@dataclass(frozen=True)
class DocInfo:
    """What the value scorer needs to know about a trained document."""

    doc_id: str
    source: str
    shard: str
    n_tokens: int
    bucket: tuple[tuple[str, str], ...] = ()


@dataclass
class Span:
    """One document's tokens inside a row: row positions ``start .. start + length - 1``."""

    occurrence: tuple[int, int]  # (round, cursor): this appearance of the document in the stream
    doc: DocInfo
    start: int
    length: int
    offset: int  # index in the document of the span's first token
    last: bool  # the document's final token is in this span
    new: bool  # trained as part of a new shard (False: drawn from the replay buffer)


@dataclass
class Row:
    tokens: np.ndarray  # int64, block_size + 1
    spans: list[Span]
    position: StreamPosition  # the stream's position after this row


def doc_info(doc: Doc, shard: str) -> DocInfo:
    meta = doc.meta
    bucket: dict[str, str] = {}
    if meta.get("lang"):
        bucket["lang"] = str(meta["lang"])
    domain = meta.get("domain")
    if not domain and meta.get("url"):
        domain = urlparse(str(meta["url"])).hostname
    if domain:
        bucket["domain"] = str(domain)
    return DocInfo(doc_id=doc.doc_id, source=doc.source, shard=shard, n_tokens=int(doc.tokens.size),
                   bucket=tuple(sorted(bucket.items())))


class StreamStopped(Exception):
    """The stream was asked to stop, or the log is closed and nothing is left."""


class RowStream:
    """Builds rows from a :class:`ManifestLog`; ``next_row`` blocks until data is there."""

    def __init__(self, log: ManifestLog, reader: ShardReader, *, block_size: int, sep_id: int, seed: int,
                 new_fraction: float = 0.75, replay_shards: int = 8, idle_round_docs: int = 256,
                 replay_when_idle: bool = True, lookahead: int = 2, position: StreamPosition | None = None):
        self.log = log
        self.reader = reader
        self.row_len = block_size + 1
        self.sep_id = sep_id
        self.new_fraction = new_fraction
        self.replay_shards = replay_shards
        self.idle_round_docs = idle_round_docs
        self.replay_when_idle = replay_when_idle
        self.lookahead = lookahead
        self.stop_event = threading.Event()
        self.events: list[dict[str, Any]] = []  # round starts, skipped shards (the loop logs them)
        if position is None:
            position = StreamPosition(rng_state=np.random.PCG64(seed).state)
        self.pos = position
        self._plan: list[tuple[int, int]] | None = None
        self._next_rng_state: dict[str, Any] | None = None
        if self.pos.round_index >= 0:  # resuming inside a round: rebuild its plan
            self._plan, self._next_rng_state = self._make_plan(self.pos.round_new, self.pos.rng_state)

    # -- shards ---------------------------------------------------------------------------
    def _entry(self, seq: int) -> ManifestEntry:
        return self.log.train_entry(seq)

    def _prefetch(self, seq: int) -> None:
        m = self._entry(seq).manifest
        self.reader.prefetch(m.path, m.shard, m.sha256, training=True)

    def _docs(self, seq: int) -> ShardDocs:
        m = self._entry(seq).manifest
        return self.reader.get(m.path, m.shard, m.sha256, training=True)

    # -- rounds ---------------------------------------------------------------------------
    def _make_plan(self, round_new: int | None, rng_state: dict[str, Any]):
        bitgen = np.random.PCG64()
        bitgen.state = rng_state
        rng = np.random.Generator(bitgen)
        refs: list[tuple[int, int]] = []
        if round_new is not None:
            n_new = len(self._docs(round_new).docs)
            refs = [(round_new, i) for i in range(n_new)]
            n_old = round(n_new * (1.0 - self.new_fraction) / self.new_fraction)
        else:
            n_old = self.idle_round_docs
        replay = [(s, n) for s, n in self.pos.replay if n > 0]
        if n_old > 0 and replay:
            counts = np.array([n for _, n in replay], dtype=np.int64)
            ends = np.cumsum(counts)
            picks = rng.integers(0, int(ends[-1]), size=n_old)
            which = np.searchsorted(ends, picks, side="right")
            starts = ends - counts
            refs += [(replay[w][0], int(p - starts[w])) for w, p in zip(which, picks)]
        order = rng.permutation(len(refs))
        return [refs[i] for i in order], bitgen.state

    def _end_round(self) -> None:
        pos = self.pos
        if pos.round_new is not None:
            n = len(self._docs(pos.round_new).docs)
            if n > 0:
                pos.replay.append((pos.round_new, n))
                pos.replay = pos.replay[-self.replay_shards:] if self.replay_shards > 0 else []
        pos.rng_state = self._next_rng_state
        pos.cursor = 0
        pos.token_offset = 0
        self._plan = None

    def _start_round(self) -> None:
        """Plan the next round; blocks while there is neither a new shard nor a replay buffer."""
        pos = self.pos
        with self.log.cond:
            while True:
                if self.stop_event.is_set():
                    raise StreamStopped("stopped")
                if pos.next_new < self.log.n_train:
                    round_new: int | None = pos.next_new
                    break
                if self.log.closed:
                    raise StreamStopped("no more shards")
                if self.replay_when_idle and pos.replay:
                    round_new = None
                    break
                self.log.cond.wait(timeout=0.1)
            n_announced = self.log.n_train
        for seq in range(pos.next_new, min(pos.next_new + 1 + self.lookahead, n_announced)):
            self._prefetch(seq)
        cut = 0
        if round_new is not None:
            try:
                docs = self._docs(round_new)
            except ShardError as exc:
                pos.skipped_shards.append(self._entry(round_new).manifest.shard)
                self.events.append({"event": "shard_skipped", "seq": round_new, "reason": str(exc)})
                pos.next_new += 1
                return self._start_round()
            pos.next_new += 1
            cut = docs.repeat_tokens_skipped
            pos.repeat_tokens_read += docs.tokens_read
            pos.repeat_tokens_skipped += cut
        pos.round_index += 1
        pos.round_new = round_new
        self._plan, self._next_rng_state = self._make_plan(round_new, pos.rng_state)
        self.events.append({"event": "round", "round": pos.round_index, "new_seq": round_new,
                            "docs": len(self._plan), "replay_shards": len(pos.replay),
                            "repeat_tokens_skipped": cut})

    # -- rows -----------------------------------------------------------------------------
    def next_row(self) -> Row:
        """The next row; raises :class:`StreamStopped` when stopped or exhausted."""
        pos = self.pos
        tokens = np.empty(self.row_len, dtype=np.int64)
        spans: list[Span] = []
        filled = 0
        while filled < self.row_len:
            if self._plan is None:
                self._start_round()
                continue
            if pos.cursor >= len(self._plan):
                self._end_round()
                continue
            seq, idx = self._plan[pos.cursor]
            shard = self._docs(seq)
            doc = shard.docs[idx]
            n = int(doc.tokens.size)
            take = min(n + 1 - pos.token_offset, self.row_len - filled)
            real = max(0, min(take, n - pos.token_offset))  # document tokens, without the boundary
            if real:
                tokens[filled:filled + real] = doc.tokens[pos.token_offset:pos.token_offset + real]
                spans.append(Span(occurrence=(pos.round_index, pos.cursor), doc=doc_info(doc, shard.shard),
                                  start=filled, length=real, offset=pos.token_offset, last=pos.token_offset + real == n,
                                  new=seq == pos.round_new))
            if take > real:
                tokens[filled + real] = self.sep_id
            filled += take
            pos.token_offset += take
            if pos.token_offset == n + 1:
                pos.cursor += 1
                pos.token_offset = 0
        return Row(tokens=tokens, spans=spans, position=StreamPosition.from_dict(pos.to_dict()))

    def stop(self) -> None:
        self.stop_event.set()
        with self.log.cond:
            self.log.cond.notify_all()

    def pending_new(self) -> int:
        """Announced training shards not yet started."""
        with self.log.cond:
            return self.log.n_train - self.pos.next_new
