"""Helpers for the integration tests of the whole pipeline."""
from __future__ import annotations

import gzip
import json
import random
import tarfile
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from foundry.audit import audit_ids
from schemas.recipe import Recipe

BAD_LINES = {
    # id -> (raw line bytes, expected reason)
    "bad-json": (b'{"id": "bad-json", "text": "unterminated', "malformed"),
    "no-text": (b'{"id": "no-text", "body": "the text is under another name"}', "missing_text"),
    "bad-utf8": (b'{"id": "bad-utf8", "text": "caf\xc3\x28 latin1 \xe9"}', "invalid_utf8"),
    "empty": (b'{"id": "empty", "text": "   \\n\\t  "}', "empty"),
    "huge": (None, "too_large"),  # built below: larger than the test recipe's max_bytes
    "not-object": (b'["id", "text"]', "malformed"),
}


def small_recipe(**shards) -> Recipe:
    r = Recipe.model_validate({
        "name": "test", "partitions": 3,
        "validate": {"max_bytes": 20_000},
        "tokenizer": {"vocab_size": 1000, "train_mb": 0.3},
        "shards": {"max_tokens": 20_000, "timeout_s": 1.0, **shards},
        "batch": {"size": 128, "within_s": 0.2},
    })
    return r


def write_corpus(path: Path, n: int, *, dup_every: int = 10, bad: bool = True, seed: int = 1) -> dict[str, str | None]:
    """A JSONL.gz corpus of n good documents (every ``dup_every``-th repeats an
    earlier text), plus the bad lines. Returns id -> expected reason (None = kept
    or duplicate)."""
    rng = random.Random(seed)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda 数据 模型 训练 语言".split()
    expected: dict[str, str | None] = {}
    texts: list[str] = []
    with gzip.open(path, "wb") as fh:
        for i in range(n):
            if texts and i % dup_every == 0:
                text = rng.choice(texts)
            else:
                text = " ".join(rng.choice(words) for _ in range(rng.randint(20, 120))) + f" doc{i}"
                texts.append(text)
            fh.write(json.dumps({"id": f"doc-{i}", "text": text}, ensure_ascii=False).encode() + b"\n")
            expected[f"doc-{i}"] = None
        if bad:
            for k, (bid, (line, reason)) in enumerate(BAD_LINES.items()):
                if line is None:
                    line = json.dumps({"id": bid, "text": "x" * 30_000}).encode()
                fh.write(line + b"\n")
                # A line whose id cannot be read is known by its file and line number.
                readable = bid in ("no-text", "empty", "huge")
                expected[bid if readable else f"{path.name}:{n + k + 1}"] = reason
    return expected


def read_outcomes(out_dir: Path) -> tuple[list[str], list[dict]]:
    """(ids in the manifest, ledger rows)."""
    ids: list[str] = []
    for part in sorted((out_dir / "manifest").glob("*.parquet")):
        ids += pq.read_table(part, columns=["doc_id"]).column(0).to_pylist()
    rows: list[dict] = []
    for part in sorted((out_dir / "ledger").glob("*.parquet")):
        rows += pq.read_table(part).to_pylist()
    return ids, rows


def shard_keys(out_dir: Path) -> Counter:
    keys: Counter = Counter()
    for tar in sorted((out_dir / "shards").glob("*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    keys[m.name.split(".", 1)[0]] += 1
    return keys


def assert_exactly_once(out_dir: Path, expected: dict[str, str | None]) -> None:
    """``foundry audit``'s check, keyed by the corpus's ids, then the expected reasons and the tars."""
    report = audit_ids(out_dir, expected)
    assert report.ok, report.text()
    ids, rows = read_outcomes(out_dir)
    by_id = {r["id"]: r for r in rows}
    for doc_id, reason in expected.items():
        if reason is not None:
            assert by_id[doc_id]["reason"] == reason, (doc_id, by_id[doc_id])
    keys = shard_keys(out_dir)
    assert sum(keys.values()) == len(ids) and all(c == 1 for c in keys.values())
