"""Open a shard tar with webdataset and decode its documents, on a pool of workers.

A shard follows ``schemas/shard_format.py``: per document ``{key}.tokens.npy``
(numpy .npy bytes) and ``{key}.json`` (metadata). Documents keep the order of
the tar, which is the shard writer's offset order, so a document is named by
``(shard, index in tar)`` everywhere in the trainer.

Workers only decode shards; they never decide what is trained. The order of
documents is decided by :mod:`trainer.shard_stream` in one place, so adding
workers cannot duplicate or skip a sample.

Trainer-side pruning (``data.skip_repeats_k``): a training shard is read with the
second and later copies of every span of at least ``k`` tokens that already
occurred earlier in the same document cut out (:func:`trainer.token_prune.skip_repeats`).
A cut token costs no compute at all, where a loss-masked one would still cost its
forward and backward pass. The cut depends on the document's tokens only, so the
stream stays deterministic and resumable; held-out shards are read whole.

Reserved held-out sample (``data.heldout_from: reserved``): every document gets a
draw in [0, 1) from a salted hash of its content hash (:func:`reserve_draw`), so
the same text lands on the same side in every run, in every shard and from every
source. Training reads leave out the documents whose draw is below the reserved
fraction; :mod:`trainer.evaluation` builds the probe and evaluation rows from them.
"""
from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import threading
from collections import OrderedDict
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import webdataset as wds

from schemas.shard_format import META_EXT, TOKENS_EXT
from trainer.token_prune import skip_repeats


class ShardError(RuntimeError):
    """A shard that cannot be used: missing, damaged, or not of the run's vocabulary."""


RESERVE_SALT = b"heldout-reserve/v1:"  # its own salt: independent of any other use of the content hash


def reserve_draw(meta: dict[str, Any], tokens: np.ndarray) -> float:
    """A uniform number in [0, 1) fixed by the document's content (its content hash, else its token ids)."""
    key = meta.get("content_hash")
    data = str(key).encode() if key else np.ascontiguousarray(tokens, dtype=np.int64).tobytes()
    return int.from_bytes(hashlib.blake2b(RESERVE_SALT + data, digest_size=8).digest(), "big") / 2.0 ** 64


@dataclass
class Doc:
    key: str
    tokens: np.ndarray  # 1-d, the shard's integer dtype
    meta: dict[str, Any] = field(default_factory=dict)
    draw: float = 1.0  # reserve_draw of the document as stored (before any cut)

    @property
    def doc_id(self) -> str:
        return str(self.meta.get("id") or self.meta.get("content_hash") or self.key)

    @property
    def source(self) -> str:
        return str(self.meta.get("source") or "unknown")


@dataclass
class ShardDocs:
    shard: str
    path: str
    docs: list[Doc]
    skipped: int = 0  # documents left out (ids outside the vocabulary, empty)
    tokens_read: int = 0  # tokens of ``docs`` as read (after the max_doc_tokens cut, before skip_repeats)
    repeat_tokens_skipped: int = 0  # of those, repeated-span tokens cut out (skip_repeats_k)
    reserved: int = 0  # documents left out as the reserved held-out sample (draw < reserve_below)


def read_shard(path: str, *, shard: str = "", sha256: str | None = None, vocab_size: int | None = None,
               max_doc_tokens: int = 0, skip_repeats_k: int = 0, reserve_below: float = 0.0) -> ShardDocs:
    """Read and check one shard. Raises :class:`ShardError` when it cannot be used.

    ``skip_repeats_k > 0``: each document comes back without the repeats of its spans of
    ``k`` or more tokens (see the module docstring); ``repeat_tokens_skipped`` counts them.
    ``reserve_below > 0``: documents whose :func:`reserve_draw` is below it are left out
    (counted in ``reserved``); they are the reserved held-out sample.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ShardError(f"cannot read shard {path}: {exc}") from None
    if sha256:
        got = hashlib.sha256(data).hexdigest()
        if got != sha256:
            raise ShardError(f"shard {path}: sha256 {got} does not match the manifest's {sha256}")
    docs: list[Doc] = []
    skipped = n_read = n_cut = n_reserved = 0
    try:
        for sample in wds.tarfile_samples([{"url": path, "stream": io.BytesIO(data)}]):
            raw_tokens = sample.get(TOKENS_EXT)
            if raw_tokens is None:
                skipped += 1
                continue
            tokens = np.load(io.BytesIO(raw_tokens), allow_pickle=False).reshape(-1)
            meta = json.loads(sample[META_EXT]) if META_EXT in sample else {}
            if tokens.size == 0 or (vocab_size is not None and int(tokens.max()) >= vocab_size):
                skipped += 1
                continue
            draw = reserve_draw(meta, tokens)
            if draw < reserve_below:
                n_reserved += 1
                continue
            if max_doc_tokens and tokens.size > max_doc_tokens:
                tokens = tokens[:max_doc_tokens]
            n_read += int(tokens.size)
            if skip_repeats_k > 0:
                tokens, n = skip_repeats(tokens, skip_repeats_k)
                n_cut += n
            docs.append(Doc(key=sample["__key__"], tokens=tokens, meta=meta, draw=draw))
    except ShardError:
        raise
    except Exception as exc:  # a damaged tar or npy
        raise ShardError(f"shard {path} is damaged: {type(exc).__name__}: {exc}") from None
    return ShardDocs(shard=shard or path.rsplit("/", 1)[-1], path=path, docs=docs, skipped=skipped,
                     tokens_read=n_read, repeat_tokens_skipped=n_cut, reserved=n_reserved)


class ShardReader:
    """Decodes shards on ``workers`` threads or processes and keeps the recent ones in memory.

    ``prefetch`` starts reading a shard the stream will need soon; ``get`` waits for it.
    ``workers=0`` reads inline (no pool). ``skip_repeats_k`` and ``reserve_below`` apply to
    the shards asked for with ``training=True`` (the row stream's); the held-out set asks
    without them and gets every document whole.
    """

    def __init__(self, *, workers: int = 2, kind: str = "thread", capacity: int = 16,
                 verify_sha256: bool = True, vocab_size: int | None = None, max_doc_tokens: int = 0,
                 skip_repeats_k: int = 0, reserve_below: float = 0.0):
        self.capacity = max(capacity, 1)
        self.verify_sha256 = verify_sha256
        self.vocab_size = vocab_size
        self.max_doc_tokens = max_doc_tokens
        self.skip_repeats_k = max(int(skip_repeats_k), 0)
        self.reserve_below = max(float(reserve_below), 0.0)
        self._pool: Executor | None = None
        if workers > 0:
            if kind == "process":
                # fork (as torch's DataLoader does): workers only run numpy and tar code, never torch
                methods = multiprocessing.get_all_start_methods()
                ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
                self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
            else:
                self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shard-reader")
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, bool], Future] = OrderedDict()  # (path, training) -> read
        self.reads = 0  # shards decoded (for tests: no shard is read twice while cached)

    def _submit(self, path: str, shard: str, sha256: str | None, training: bool) -> Future:
        kwargs = dict(shard=shard, sha256=sha256 if self.verify_sha256 else None,
                      vocab_size=self.vocab_size, max_doc_tokens=self.max_doc_tokens,
                      skip_repeats_k=self.skip_repeats_k if training else 0,
                      reserve_below=self.reserve_below if training else 0.0)
        self.reads += 1
        if self._pool is None:
            fut: Future = Future()
            try:
                fut.set_result(read_shard(path, **kwargs))
            except Exception as exc:
                fut.set_exception(exc)
            return fut
        return self._pool.submit(read_shard, path, **kwargs)

    def prefetch(self, path: str, shard: str = "", sha256: str | None = None, *, training: bool = False) -> Future:
        # a training read differs only when it cuts something: otherwise both share one read
        key = (path, bool(training) and (self.skip_repeats_k > 0 or self.reserve_below > 0))
        with self._lock:
            fut = self._cache.get(key)
            if fut is None:
                fut = self._submit(path, shard, sha256, key[1])
                self._cache[key] = fut
            self._cache.move_to_end(key)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
            return fut

    def get(self, path: str, shard: str = "", sha256: str | None = None, *, training: bool = False) -> ShardDocs:
        return self.prefetch(path, shard, sha256, training=training).result()

    def pin(self, paths: list[str]) -> None:
        """Keep these shards (the replay buffer) at the warm end of the cache."""
        wanted = set(paths)
        with self._lock:
            for key in [k for k in self._cache if k[0] in wanted]:
                self._cache.move_to_end(key)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
