"""A reserved held-out set limited to named sources: what "value" is measured against in the live loop."""
from __future__ import annotations

from collections import Counter

import numpy as np

from trainer.config import DataConfig
from trainer.evaluation import heldout_sets
from trainer.shard_reader import ShardReader, read_shard
from trainer.shard_stream import ManifestEntry

from .conftest import VOCAB


def _sources_in(rows, docs) -> Counter:
    """Tokens of ``rows`` by the source of the document they came from (a document may be cut)."""
    flat = rows.reshape(-1).numpy()
    out, start = Counter(), 0
    for i, t in enumerate(flat):
        if t == VOCAB:
            piece = flat[start:i].astype(np.int64)
            for d in docs:
                if piece.size and np.array_equal(d.tokens[:piece.size].astype(np.int64), piece):
                    out[d.source] += piece.size
                    break
            start = i + 1
    return out


def test_only_the_named_sources_fill_the_sets_in_about_equal_shares(make_shards):
    ms = make_shards(n_shards=4, docs_per_shard=60, sources=("web", "books", "junk"))
    docs = [d for m in ms for d in read_shard(m.path).docs]
    entries = [ManifestEntry(i, m) for i, m in enumerate(ms)]
    data = DataConfig(heldout_from="reserved", reserve_probe=0.2, reserve_eval=0.3, heldout_max_rows=6,
                      heldout_sources=["web", "books"])
    sets = heldout_sets(entries, ShardReader(workers=0, vocab_size=VOCAB), data, block_size=16, sep_id=VOCAB,
                        probe_rows=4)
    for rows in (sets.probe, sets.eval):
        got = _sources_in(rows, docs)
        assert set(got) <= {"web", "books"} and "junk" not in got
        assert got["web"] and got["books"]
        assert abs(got["web"] - got["books"]) <= 17 + 2  # each about half of the rows' tokens
    everyone = heldout_sets(entries, ShardReader(workers=0, vocab_size=VOCAB),
                            DataConfig(heldout_from="reserved", reserve_probe=0.2, reserve_eval=0.3,
                                       heldout_max_rows=100), block_size=16, sep_id=VOCAB, probe_rows=100)
    assert "junk" in _sources_in(everyone.eval, docs)  # without the list every source's sample counts
