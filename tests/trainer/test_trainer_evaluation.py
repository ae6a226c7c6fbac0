"""The held-out rows: a reserved sample of every source, and a probe disjoint from the evaluation set."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from trainer.checkpoint import CheckpointStore
from trainer.config import DataConfig
from trainer.evaluation import heldout_sets
from trainer.loop import Trainer
from trainer.shard_feed import ListShardFeed
from trainer.shard_reader import ShardReader, read_shard, reserve_draw
from trainer.shard_stream import ManifestEntry
from trainer.value_publisher import MemoryValuePublisher

from .conftest import VOCAB


def _rows_docs(rows: torch.Tensor, docs: dict[bytes, str]) -> set[str]:
    """The documents whose tokens appear in ``rows`` (docs: token bytes -> id; rows split at the boundary)."""
    flat = rows.reshape(-1).numpy()
    found, start = set(), 0
    for i, t in enumerate(flat):
        if t == VOCAB:
            key = flat[start:i].astype(np.int64).tobytes()
            if key in docs:
                found.add(docs[key])
            start = i + 1
    return found


def test_reserve_draw_is_fixed_by_content_and_uniform():
    toks = np.arange(10)
    assert reserve_draw({"content_hash": "abc"}, toks) == reserve_draw({"content_hash": "abc"}, toks[:3])
    assert reserve_draw({}, toks) == reserve_draw({"id": "other"}, toks.astype(np.uint16))  # token ids, any dtype
    draws = np.array([reserve_draw({"content_hash": f"h{i}"}, toks) for i in range(4000)])
    assert 0.0 <= draws.min() and draws.max() < 1.0
    assert abs((draws < 0.1).mean() - 0.1) < 0.02 and abs(draws.mean() - 0.5) < 0.03


def test_training_reads_leave_out_exactly_the_reserved_sample(make_shards):
    ms = make_shards(n_shards=3, docs_per_shard=40)
    for m in ms:
        whole = read_shard(m.path)
        cut = read_shard(m.path, reserve_below=0.3)
        reserved = {d.key for d in whole.docs if d.draw < 0.3}
        assert 0 < len(reserved) < len(whole.docs)
        assert {d.key for d in cut.docs} == {d.key for d in whole.docs} - reserved
        assert cut.reserved == len(reserved)
    reader = ShardReader(workers=0, vocab_size=VOCAB, reserve_below=0.3)
    assert len(reader.get(ms[0].path, training=True).docs) < len(reader.get(ms[0].path).docs)


def test_reserved_probe_and_eval_are_disjoint_and_drawn_by_fraction(make_shards):
    ms = make_shards(n_shards=4, docs_per_shard=50)
    data = DataConfig(heldout_from="reserved", reserve_probe=0.1, reserve_eval=0.2, heldout_max_rows=1000)
    reader = ShardReader(workers=0, vocab_size=VOCAB)
    sets = heldout_sets([ManifestEntry(i, m) for i, m in enumerate(ms)], reader, data, block_size=16,
                        sep_id=VOCAB, probe_rows=1000)
    docs = [d for m in ms for d in read_shard(m.path).docs]
    by_tokens = {d.tokens.astype(np.int64).tobytes(): d.key for d in docs}
    want_probe = {d.key for d in docs if d.draw < 0.1}
    want_eval = {d.key for d in docs if 0.1 <= d.draw < 0.3}
    got_probe, got_eval = _rows_docs(sets.probe, by_tokens), _rows_docs(sets.eval, by_tokens)
    assert got_probe and got_eval and not got_probe & got_eval
    assert got_probe <= want_probe and got_eval <= want_eval
    # every reserved document but the last, cut by the row end, is there
    assert len(want_probe - got_probe) <= 1 and len(want_eval - got_eval) <= 1
    assert sets.probe_docs == len(want_probe) and sets.eval_docs == len(want_eval)


def test_first_shards_probe_rows_come_before_and_apart_from_the_eval_rows(make_shards):
    ms = make_shards(n_shards=1, docs_per_shard=40)
    data = DataConfig(heldout_from="first_shards", heldout_max_rows=6)
    sets = heldout_sets([ManifestEntry(0, ms[0])], ShardReader(workers=0), data, block_size=16, sep_id=VOCAB,
                        probe_rows=4)
    assert sets.probe.shape == (4, 17) and sets.eval.shape == (6, 17)
    docs = read_shard(ms[0].path).docs
    by_tokens = {d.tokens.astype(np.int64).tobytes(): d.key for d in docs}
    probe, evals = _rows_docs(sets.probe, by_tokens), _rows_docs(sets.eval, by_tokens)
    assert probe and evals and not probe & evals
    order = [d.key for d in docs]
    assert max(order.index(k) for k in probe) < min(order.index(k) for k in evals)


def test_reserved_mode_needs_both_fractions():
    with pytest.raises(ValidationError):
        DataConfig(heldout_from="reserved", reserve_probe=0.0)
    assert DataConfig(heldout_from="first_shards").reserved_fraction() == 0.0
    assert DataConfig(heldout_from="reserved", reserve_probe=0.01, reserve_eval=0.02).reserved_fraction() == 0.03


def test_the_trainer_never_trains_the_reserved_sample_and_keeps_its_rows_across_a_resume(
        tmp_path, make_shards, trainer_config):
    ms = make_shards(n_shards=5, docs_per_shard=40)
    cfg = trainer_config(data={"heldout_from": "reserved", "reserve_probe": 0.1, "reserve_eval": 0.15,
                               "heldout_max_rows": 6})
    reserved = {d.meta["id"] for m in ms for d in read_shard(m.path).docs if d.draw < 0.25}
    trained: set[str] = set()

    def on_batch(step, batch, out):
        trained.update(slot.doc.doc_id for slot in batch.docs)

    pub = MemoryValuePublisher()
    Trainer(cfg, tmp_path / "run", ListShardFeed(ms), pub, max_steps=25, on_batch=on_batch).run()
    assert trained and not trained & reserved
    assert not {r.doc_id for r in pub.records} & reserved  # value scores only for trained documents
    run = next((tmp_path / "run" / "runs").iterdir())
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    held = [e for e in events if e["event"] == "heldout"]
    assert len(held) == 1 and held[0]["heldout_from"] == "reserved"
    assert held[0]["probe_rows"] == 4 and held[0]["eval_rows"] == 6
    state = CheckpointStore(run / "checkpoints").load_latest()
    assert state["heldout"]["eval"].shape == (6, 33)
    # a restart reads its rows from the checkpoint, not from shards (which it may no longer have)
    Trainer(cfg, tmp_path / "run", ListShardFeed(ms), MemoryValuePublisher(), max_steps=30).run()
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    assert len([e for e in events if e["event"] == "heldout"]) == 1
    after = CheckpointStore(run / "checkpoints").load_latest()
    assert after["step"] == 30 and torch.equal(after["heldout"]["eval"], state["heldout"]["eval"])
    assert torch.equal(after["heldout"]["probe"], state["heldout"]["probe"])
