"""The on-disk contract of a shard set, shared by the shard writer, the trainer and replay.

Layout of one output folder (``{out_root}/{namespace}/{recipe_version}/``)::

    shards/p003-000000001234.tar        WebDataset tar; one shard holds documents of one
                                        partition of the tokenized topic, in offset order;
                                        1234 = documents that partition sharded before it
    manifest/p003-000000001234.parquet  one row per document of that shard
    ledger/p003-000000000000.parquet    rejections (one row per rejected input id)
    recipe.yaml                         the recipe that produced them

Per document in a shard, with ``__key__`` the document's content hash (32 hex chars):

    {key}.tokens.npy   token ids, numpy .npy, dtype = token_dtype(vocab_size)
    {key}.json         id, source, url, lang, licence, content_hash, scores,
                       recipe_version, tokenizer_version, vocab_size, n_tokens
"""
from __future__ import annotations

import re

TOKENS_EXT = "tokens.npy"
META_EXT = "json"
SHARD_RE = re.compile(r"^p(?P<partition>\d{3})-(?P<offset>\d{12})\.tar$")

MANIFEST_COLUMNS = (
    "doc_id", "shard", "key", "source", "url", "lang", "content_hash", "n_tokens", "n_bytes",
    "partition", "recipe_version", "tokenizer_version", "scores_json", "raw_ref",
)


def token_dtype(vocab_size: int) -> str:
    """The smallest unsigned integer type that holds every id of the vocabulary."""
    if vocab_size <= 1 << 8:
        return "uint8"
    if vocab_size <= 1 << 16:
        return "uint16"
    return "uint32"


def shard_name(partition: int, first_seq: int) -> str:
    return f"p{partition:03d}-{first_seq:012d}.tar"


def part_name(partition: int, first_seq: int) -> str:
    """Name of the Parquet part (manifest or ledger) that belongs to a shard or batch."""
    return f"p{partition:03d}-{first_seq:012d}.parquet"
