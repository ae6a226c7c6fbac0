"""Shards of synthetic token documents, written exactly as ``schemas/shard_format.py`` says.

For tests, benchmarks and demos of the trainer without the upstream stages:
a random Markov "language" (each token has a few likely successors), random
garbage, and a writer that produces a WebDataset tar plus its ShardManifest.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds

from schemas.records import ShardManifest
from schemas.shard_format import META_EXT, TOKENS_EXT, part_name, shard_name, token_dtype


@dataclass
class SyntheticDoc:
    tokens: np.ndarray
    id: str
    source: str = "synthetic"
    lang: str | None = "en"
    url: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def write_shard(folder: str | Path, docs: list[SyntheticDoc], *, vocab_size: int, tokenizer_version: str = "tok-test",
                recipe_version: str = "recipe-test", partition: int = 0, first_offset: int = 0) -> ShardManifest:
    """Write ``shards/p{partition}-{offset}.tar`` under ``folder`` and return its manifest."""
    folder = Path(folder)
    (folder / "shards").mkdir(parents=True, exist_ok=True)
    name = shard_name(partition, first_offset)
    path = folder / "shards" / name
    dtype = token_dtype(vocab_size)
    n_tokens = 0
    with wds.TarWriter(str(path)) as writer:
        for doc in docs:
            arr = np.asarray(doc.tokens).astype(dtype)
            content_hash = hashlib.sha256(arr.tobytes() + doc.id.encode()).hexdigest()[:32]
            meta = {"id": doc.id, "source": doc.source, "url": doc.url, "lang": doc.lang, "licence": None,
                    "content_hash": content_hash, "scores": {}, "recipe_version": recipe_version,
                    "tokenizer_version": tokenizer_version, "vocab_size": vocab_size, "n_tokens": int(arr.size),
                    **doc.meta}
            writer.write({"__key__": content_hash, TOKENS_EXT: npy_bytes(arr),
                          META_EXT: json.dumps(meta).encode("utf-8")})
            n_tokens += int(arr.size)
    data = path.read_bytes()
    return ShardManifest(
        shard=name, path=str(path.resolve()), recipe_version=recipe_version, tokenizer_version=tokenizer_version,
        partition=partition, first_seq=first_offset, end_offset=first_offset + len(docs),
        n_docs=len(docs), n_tokens=n_tokens, n_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
        token_dtype=dtype, vocab_size=vocab_size,
        manifest_path=str((folder / "manifest" / part_name(partition, first_offset)).resolve()),
    )


class MarkovLanguage:
    """Tokens from a fixed random first-order Markov chain: each token has ``fanout`` likely successors."""

    def __init__(self, vocab_size: int, seed: int = 0, fanout: int = 4):
        rng = np.random.default_rng(seed)
        self.vocab_size = vocab_size
        self.successors = np.stack([rng.choice(vocab_size, size=fanout, replace=False) for _ in range(vocab_size)])
        weights = 1.0 / np.arange(1, fanout + 1)
        self.probs = weights / weights.sum()

    def sample(self, rng: np.random.Generator, length: int) -> np.ndarray:
        out = np.empty(length, dtype=np.int64)
        tok = int(rng.integers(self.vocab_size))
        choices = rng.choice(len(self.probs), size=length, p=self.probs)
        for i in range(length):
            out[i] = tok
            tok = int(self.successors[tok, choices[i]])
        return out


def garbage(rng: np.random.Generator, vocab_size: int, length: int) -> np.ndarray:
    """Uniformly random token ids: text with nothing to learn."""
    return rng.integers(0, vocab_size, size=length)


def make_stream(folder: str | Path, *, n_shards: int, docs_per_shard: int, vocab_size: int = 256,
                doc_len: tuple[int, int] = (20, 120), seed: int = 0, tokenizer_version: str = "tok-test",
                language: MarkovLanguage | None = None, sources: tuple[str, ...] = ("web", "books"),
                garbage_every: int = 0) -> list[ShardManifest]:
    """``n_shards`` shards of Markov documents; every ``garbage_every``-th shard (if > 0) is all garbage."""
    lang = language or MarkovLanguage(vocab_size, seed=seed)
    rng = np.random.default_rng(seed + 1)
    manifests = []
    for s in range(n_shards):
        bad = garbage_every > 0 and s > 0 and s % garbage_every == 0
        docs = []
        for d in range(docs_per_shard):
            n = int(rng.integers(doc_len[0], doc_len[1] + 1))
            toks = garbage(rng, vocab_size, n) if bad else lang.sample(rng, n)
            src = "garbage" if bad else sources[d % len(sources)]
            docs.append(SyntheticDoc(toks, id=f"s{s:04d}-d{d:04d}", source=src,
                                     lang="en" if d % 3 else "zh", url=f"https://{src}.example/{s}/{d}"))
        manifests.append(write_shard(folder, docs, vocab_size=vocab_size, tokenizer_version=tokenizer_version,
                                     first_offset=s * docs_per_shard))
    return manifests
