"""Open a shard tar with webdataset and decode its documents, on a pool of workers.

A shard follows ``schemas/shard_format.py``: per document ``{key}.tokens.npy``
(numpy .npy bytes) and ``{key}.json`` (metadata). Documents keep the order of
the tar, which is the shard writer's offset order, so a document is named by
``(shard, index in tar)`` everywhere in the trainer.

Workers only decode shards; they never decide what is trained. The order of
documents is decided by :mod:`trainer.shard_stream` in one place, so adding
workers cannot duplicate or skip a sample.
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


class ShardError(RuntimeError):
    """A shard that cannot be used: missing, damaged, or not of the run's vocabulary."""


@dataclass
class Doc:
    key: str
    tokens: np.ndarray  # 1-d, the shard's integer dtype
    meta: dict[str, Any] = field(default_factory=dict)

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


def read_shard(path: str, *, shard: str = "", sha256: str | None = None, vocab_size: int | None = None,
               max_doc_tokens: int = 0) -> ShardDocs:
    """Read and check one shard. Raises :class:`ShardError` when it cannot be used."""
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
    skipped = 0
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
            if max_doc_tokens and tokens.size > max_doc_tokens:
                tokens = tokens[:max_doc_tokens]
            docs.append(Doc(key=sample["__key__"], tokens=tokens, meta=meta))
    except ShardError:
        raise
    except Exception as exc:  # a damaged tar or npy
        raise ShardError(f"shard {path} is damaged: {type(exc).__name__}: {exc}") from None
    return ShardDocs(shard=shard or path.rsplit("/", 1)[-1], path=path, docs=docs, skipped=skipped)


class ShardReader:
    """Decodes shards on ``workers`` threads or processes and keeps the recent ones in memory.

    ``prefetch`` starts reading a shard the stream will need soon; ``get`` waits for it.
    ``workers=0`` reads inline (no pool).
    """

    def __init__(self, *, workers: int = 2, kind: str = "thread", capacity: int = 16,
                 verify_sha256: bool = True, vocab_size: int | None = None, max_doc_tokens: int = 0):
        self.capacity = max(capacity, 1)
        self.verify_sha256 = verify_sha256
        self.vocab_size = vocab_size
        self.max_doc_tokens = max_doc_tokens
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
        self._cache: OrderedDict[str, Future] = OrderedDict()
        self.reads = 0  # shards decoded (for tests: no shard is read twice while cached)

    def _submit(self, path: str, shard: str, sha256: str | None) -> Future:
        kwargs = dict(shard=shard, sha256=sha256 if self.verify_sha256 else None,
                      vocab_size=self.vocab_size, max_doc_tokens=self.max_doc_tokens)
        self.reads += 1
        if self._pool is None:
            fut: Future = Future()
            try:
                fut.set_result(read_shard(path, **kwargs))
            except Exception as exc:
                fut.set_exception(exc)
            return fut
        return self._pool.submit(read_shard, path, **kwargs)

    def prefetch(self, path: str, shard: str = "", sha256: str | None = None) -> Future:
        with self._lock:
            fut = self._cache.get(path)
            if fut is None:
                fut = self._submit(path, shard, sha256)
                self._cache[path] = fut
            self._cache.move_to_end(path)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
            return fut

    def get(self, path: str, shard: str = "", sha256: str | None = None) -> ShardDocs:
        return self.prefetch(path, shard, sha256).result()

    def pin(self, paths: list[str]) -> None:
        """Keep these shards (the replay buffer) at the warm end of the cache."""
        with self._lock:
            for p in paths:
                if p in self._cache:
                    self._cache.move_to_end(p)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
