"""Packs tokenized documents into WebDataset tar shards with a Parquet manifest.

One shard holds consecutive documents of one partition of the tokenized topic
and is named by that partition and the number of documents the partition had
sharded before it, so a shard rewritten after a crash gets the same name and
replaces its partial predecessor, and the same documents give the same shards. Order
of durability: tar, then manifest part (whose metadata records the resume
offset), then the ShardManifest message, then the offset commit.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds

from consumers.partitioned_sink import PartitionedSink, SinkStopped, atomic_write, read_part_end, write_part_end
from telemetry import metrics
from schemas import CuratedDocument, Reason, Rejection, SchemaError, ShardManifest, Topics
from schemas.shard_format import MANIFEST_COLUMNS, META_EXT, TOKENS_EXT, part_name, shard_name, token_dtype
from iolayer.publisher import RecordPublisher

log = logging.getLogger(__name__)


def _newer_version(value: bytes | None) -> bool:
    try:
        obj = json.loads(value) if value is not None else None
    except ValueError:
        return False
    v = obj.get("v") if isinstance(obj, dict) else None
    return (obj or {}).get("schema") == CuratedDocument.SCHEMA and isinstance(v, int) and v > CuratedDocument.VERSION


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


class ShardWriter(PartitionedSink):
    sink_name = "manifest"

    def __init__(self, bootstrap: str, out_dir: str | Path, *, namespace: str = "live", recipe_version: str,
                 vocab_size: int, max_tokens: int = 1 << 20, max_bytes: int = 64 << 20,
                 timeout_s: float | None = 5.0, publish: bool = True):
        topics = Topics(namespace=namespace)
        super().__init__(bootstrap, topics.tokenized, f"foundry-{namespace}-{recipe_version}-shard-writer",
                         max_size=max_tokens, max_bytes=max_bytes, timeout_s=timeout_s)
        self.out = Path(out_dir)
        self.shard_dir = self.out / "shards"
        self.manifest_dir = self.out / "manifest"
        self.published_dir = self.manifest_dir / "_published"
        for d in (self.shard_dir, self.manifest_dir, self.published_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.recipe_version = recipe_version
        self.vocab_size = vocab_size
        self.dtype = token_dtype(vocab_size)
        self.tokens_written = 0
        self.publisher = RecordPublisher(bootstrap, topics.shards, check=False,
                                         client_id="foundry-shard-writer") if publish else None
        self.namespace = namespace
        self.rejections: RecordPublisher | None = None  # made on the first message it cannot shard

    # --- PartitionedSink ------------------------------------------------
    def decode(self, msg) -> CuratedDocument | Rejection:
        """A document; a Rejection for a message that cannot be sharded (not a curated
        document, or one without tokens), which ``divert`` sends to the ledger. A document
        of a newer schema version is no reason to reject it, and one of another recipe
        version belongs to another output: the writer stops instead."""
        try:
            doc = CuratedDocument.decode(msg.value())
        except SchemaError as err:
            if _newer_version(msg.value()):
                raise SinkStopped(f"{msg.topic()}[{msg.partition()}] offset {msg.offset()}: {err.detail}; "
                                  f"upgrade the shard writer (the message stays on the topic, nothing "
                                  f"after it was skipped)") from None
            return self._unshardable(msg, err.reason, err.detail)
        if doc.recipe_version != self.recipe_version:
            raise SinkStopped(f"{msg.topic()}[{msg.partition()}] offset {msg.offset()}: a document of recipe version "
                              f"{doc.recipe_version} in the output of version {self.recipe_version}; one namespace "
                              f"runs one recipe version (streams/namespace_guard.py)")
        if doc.tokens_b64 is None:
            return self._unshardable(msg, Reason.MALFORMED, f"document {doc.id} reached the shard writer untokenized",
                                     doc)
        return doc

    def _unshardable(self, msg, reason: Reason, detail: str, doc: CuratedDocument | None = None) -> Rejection:
        headers = {k: v.decode("utf-8", "replace") for k, v in (msg.headers() or []) if v is not None}
        coords = f"{msg.topic()}:{msg.partition()}:{msg.offset()}"
        return Rejection(id=headers.get("doc_id") or coords, reason=reason.value, stage="shard_writer",
                         recipe_version=self.recipe_version, detail=detail[:500],
                         source=doc.source if doc else None, content_hash=doc.content_hash if doc else None,
                         raw_ref=headers.get("raw_ref") or coords)

    def divert(self, msg, item) -> bool:
        if not isinstance(item, Rejection):
            return False
        if self.rejections is None:
            self.rejections = RecordPublisher(self.bootstrap, Topics(namespace=self.namespace).rejections,
                                              check=False, client_id="foundry-shard-writer-rejections")
        self.rejections.publish(item, key=item.id)
        log.warning("%s: not sharded, sent to the ledger (%s: %s)", item.raw_ref, item.reason, item.detail)
        return True

    def before_commit(self) -> None:
        if self.rejections is not None:
            self.rejections.flush(60)  # delivered before the offset that passes them is committed

    def key_of(self, doc: CuratedDocument) -> str:
        return doc.content_hash  # unique among kept documents: exact dedup ran upstream

    def measure(self, doc: CuratedDocument, raw_len: int) -> int:
        return doc.n_tokens

    def recover_partition(self, partition: int) -> tuple[int | None, set[str], int]:
        got = self.recover_from(self.manifest_dir, partition,
                                lambda part: pq.read_table(part, columns=["content_hash"]).column(0).to_pylist())
        if self.publisher is not None:
            # A part is announced right after it is written, before the next one: only the
            # newest can have been left unannounced by a crash (two, to be generous).
            for part in sorted(self.manifest_dir.glob(f"p{partition:03d}-*.parquet"))[-2:]:
                if not (self.published_dir / (part.stem + ".ok")).exists():
                    self._announce(part)  # crashed between manifest and announcement
        return got

    def write_part(self, partition: int, first_seq: int, end_offset: int,
                   items: list[tuple[int, CuratedDocument]]) -> None:
        name = shard_name(partition, first_seq)
        shard_path = self.shard_dir / name
        rows: dict[str, list[Any]] = {c: [] for c in MANIFEST_COLUMNS}
        n_tokens = 0

        def write_tar(tmp: Path) -> None:
            nonlocal n_tokens
            with wds.TarWriter(str(tmp), mtime=0) as tw:
                for offset, doc in items:
                    toks = doc.tokens
                    if toks is None:
                        raise ValueError(f"document {doc.id} reached the shard writer untokenized")
                    meta = {
                        "id": doc.id, "source": doc.source, "url": doc.url, "lang": doc.lang,
                        "licence": doc.licence, "content_hash": doc.content_hash, "scores": doc.scores,
                        "recipe_version": doc.recipe_version, "tokenizer_version": doc.tokenizer_version,
                        "vocab_size": self.vocab_size, "n_tokens": int(len(toks)),
                    }
                    # Fixed mtime so the same documents give byte-identical tars (replay).
                    tw.write({"__key__": doc.content_hash,
                              TOKENS_EXT: _npy_bytes(toks.astype(self.dtype)),
                              META_EXT: json.dumps(meta, ensure_ascii=False, sort_keys=True).encode()})
                    n_tokens += len(toks)
                    for col, val in (("doc_id", doc.id), ("shard", name), ("key", doc.content_hash),
                                     ("source", doc.source), ("url", doc.url), ("lang", doc.lang),
                                     ("content_hash", doc.content_hash), ("n_tokens", int(len(toks))),
                                     ("n_bytes", len(doc.text.encode("utf-8"))), ("partition", partition),
                                     ("recipe_version", doc.recipe_version),
                                     ("tokenizer_version", doc.tokenizer_version),
                                     ("scores_json", json.dumps(doc.scores, sort_keys=True)),
                                     ("raw_ref", doc.meta.get("raw_ref"))):
                        rows[col].append(val)

        atomic_write(shard_path, write_tar)
        table = pa.table(rows)
        part = self.manifest_dir / part_name(partition, first_seq)
        atomic_write(part, lambda tmp: pq.write_table(table, tmp))
        write_part_end(part, end_offset)
        self.tokens_written += n_tokens
        metrics.record_shard(shard_path.stat().st_size, rows["source"], rows["n_tokens"])
        if self.publisher is not None:
            self._announce(part)

    def _announce(self, part: Path) -> None:
        """Publish the ShardManifest of a durable shard, then mark it announced.
        A crash in between announces it twice; the trainer keys shards by name."""
        table = pq.read_table(part)
        name = table.column("shard")[0].as_py()
        shard_path = self.shard_dir / name
        end = read_part_end(part)
        msg = ShardManifest(
            shard=name, path=str(shard_path.resolve()), recipe_version=self.recipe_version,
            tokenizer_version=table.column("tokenizer_version")[0].as_py() or "",
            partition=int(table.column("partition")[0].as_py()),
            first_seq=int(part.stem.split("-")[1]), end_offset=-1 if end is None else end, n_docs=table.num_rows,
            n_tokens=int(sum(table.column("n_tokens").to_pylist())), n_bytes=shard_path.stat().st_size,
            sha256=hashlib.sha256(shard_path.read_bytes()).hexdigest(), token_dtype=self.dtype,
            vocab_size=self.vocab_size, manifest_path=str(part.resolve()),
        )
        self.publisher.publish(msg, key=name)
        self.publisher.flush(60)
        (self.published_dir / (part.stem + ".ok")).touch()
