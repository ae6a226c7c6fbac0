"""Trainer-side pruning (data.skip_repeats_k): inside a training document, the second and later
copies of a span of >= k tokens are cut out before packing, and counted; held-out shards and
k = 0 leave documents whole."""
from __future__ import annotations

import json

import numpy as np

from trainer.config import DataConfig
from trainer.evaluation import heldout_sets
from trainer.loop import Trainer
from trainer.shard_feed import ListShardFeed
from trainer.shard_reader import ShardReader, read_shard
from trainer.shard_stream import ManifestEntry, ManifestLog, RowStream, StreamStopped
from trainer.synthetic_shards import SyntheticDoc, write_shard
from trainer.value_publisher import MemoryValuePublisher

VOCAB = 64
K = 8


def _unique(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, VOCAB, size=n)


def _shards(tmp_path, n_train: int = 3, reps: int = 4):
    """A held-out shard and ``n_train`` training shards; in each, document 0 is one 12-token span
    ``reps`` times plus a fresh tail, the others have no repeated span."""
    rng = np.random.default_rng(3)
    out = []
    for s in range(n_train + 1):
        span = _unique(rng, 12)
        docs = [SyntheticDoc(np.concatenate([np.tile(span, reps), _unique(rng, 10)]), id=f"s{s}-rep")]
        docs += [SyntheticDoc(np.arange(20) % VOCAB + d, id=f"s{s}-d{d}") for d in range(1, 4)]
        out.append(write_shard(tmp_path / "data", docs, vocab_size=VOCAB, first_offset=s * 10))
    return out


def test_a_repeated_span_is_cut_after_its_first_copy_and_counted(tmp_path):
    m = _shards(tmp_path, n_train=0)[0]
    whole = read_shard(m.path, vocab_size=VOCAB)
    cut = read_shard(m.path, vocab_size=VOCAB, skip_repeats_k=K)
    rep_whole, rep_cut = whole.docs[0].tokens, cut.docs[0].tokens
    assert rep_whole.size == 4 * 12 + 10
    # the first copy and the fresh tail stay, in order; the three later copies are gone
    assert rep_cut.size == 12 + 10
    assert np.array_equal(rep_cut, np.concatenate([rep_whole[:12], rep_whole[-10:]]))
    assert cut.repeat_tokens_skipped == 3 * 12 and whole.repeat_tokens_skipped == 0
    assert cut.tokens_read == whole.tokens_read == sum(d.tokens.size for d in whole.docs)
    # documents without a repeated span are untouched
    assert all(np.array_equal(a.tokens, b.tokens) for a, b in zip(whole.docs[1:], cut.docs[1:]))
    # a k longer than the whole repeated run finds nothing to cut
    assert read_shard(m.path, vocab_size=VOCAB, skip_repeats_k=40).repeat_tokens_skipped == 0

    reader = ShardReader(workers=0, vocab_size=VOCAB, skip_repeats_k=K)
    assert reader.get(m.path, training=True).docs[0].tokens.size == 22
    assert reader.get(m.path).docs[0].tokens.size == 58  # not for training: read whole
    assert ShardReader(workers=0, vocab_size=VOCAB).get(m.path, training=True).docs[0].tokens.size == 58


def test_row_stream_trains_the_cut_documents_counts_the_skip_and_keeps_the_heldout_whole(tmp_path):
    ms = _shards(tmp_path, n_train=3)
    log = ManifestLog(1)
    for i, m in enumerate(ms):
        log.append(ManifestEntry(i, m))
    log.close()
    reader = ShardReader(workers=0, vocab_size=VOCAB, skip_repeats_k=K)
    stream = RowStream(log, reader, block_size=16, sep_id=VOCAB, seed=7, new_fraction=1.0, replay_shards=2,
                       replay_when_idle=False)
    trained: dict[str, int] = {}
    rows = []
    try:
        while True:
            rows.append(stream.next_row())
    except StreamStopped:
        pass
    for r in rows:
        for sp in r.spans:
            trained[sp.doc.doc_id] = trained.get(sp.doc.doc_id, 0) + sp.length
            assert sp.doc.n_tokens == (22 if sp.doc.doc_id.endswith("-rep") else 20)
    assert {d for d in trained if d.endswith("-rep")} == {"s1-rep", "s2-rep", "s3-rep"}
    pos = rows[-1].position
    assert pos.repeat_tokens_skipped == 3 * 36  # three new shards, 36 repeated tokens each
    assert pos.repeat_tokens_read == 3 * (58 + 3 * 20)
    assert [e["repeat_tokens_skipped"] for e in stream.events if e["event"] == "round"] == [36, 36, 36]
    # the held-out set is real text as it is: nothing is cut from it
    held = heldout_sets(log.heldout, reader, DataConfig(heldout_max_rows=100), block_size=16, sep_id=VOCAB,
                        probe_rows=0).eval
    assert held.numel() == (58 + 1 + 3 * 21) // 17 * 17


def test_the_trainer_applies_skip_repeats_k_from_its_config_and_reports_it(tmp_path, trainer_config):
    ms = _shards(tmp_path, n_train=4)
    pub = MemoryValuePublisher()
    cfg = trainer_config(data={"skip_repeats_k": K, "new_fraction": 1.0})
    Trainer(cfg, tmp_path / "run", ListShardFeed(ms), pub, until_idle=0.3).run()
    run = next((tmp_path / "run" / "runs").iterdir())
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    end = [e for e in events if e["event"] == "run_end"][-1]
    assert end["repeat_tokens_skipped"] == 4 * 36 and end["repeat_tokens_read"] == 4 * 118
    scored = {r.doc_id: r.n_tokens for r in pub.records if r.doc_id.endswith("-rep")}
    assert scored and set(scored.values()) == {22}  # the value scores see the cut document

    off = MemoryValuePublisher()
    Trainer(trainer_config(data={"new_fraction": 1.0}), tmp_path / "off", ListShardFeed(ms), off,
            until_idle=0.3).run()
    assert {r.n_tokens for r in off.records if r.doc_id.endswith("-rep")} == {58}
