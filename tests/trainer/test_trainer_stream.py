"""The row stream: deterministic, resumable, mixing new and replayed shards, worker-count independent."""
from __future__ import annotations

import collections

import numpy as np
import pytest

from trainer.shard_reader import ShardReader
from trainer.shard_stream import ManifestEntry, ManifestLog, RowStream, StreamPosition, StreamStopped

VOCAB = 64


def _log(manifests, heldout=1, close=True):
    log = ManifestLog(heldout)
    for i, m in enumerate(manifests):
        log.append(ManifestEntry(i, m))
    if close:
        log.close()
    return log


def _stream(log, workers=0, kind="thread", position=None, **kw):
    kw.setdefault("new_fraction", 0.75)
    kw.setdefault("replay_shards", 3)
    kw.setdefault("replay_when_idle", False)
    reader = ShardReader(workers=workers, kind=kind, capacity=16, vocab_size=VOCAB)
    return RowStream(log, reader, block_size=16, sep_id=VOCAB, seed=kw.pop("seed", 7), position=position, **kw)


def _drain(stream, limit=10_000):
    rows = []
    try:
        while len(rows) < limit:
            rows.append(stream.next_row())
    except StreamStopped:
        pass
    stream.reader.close()
    return rows


def test_same_seed_same_rows_other_seed_other_rows(make_shards):
    ms = make_shards()
    a = _drain(_stream(_log(ms)))
    b = _drain(_stream(_log(ms)))
    c = _drain(_stream(_log(ms), seed=8))
    assert len(a) > 20
    assert all(np.array_equal(x.tokens, y.tokens) for x, y in zip(a, b)) and len(a) == len(b)
    assert not all(np.array_equal(x.tokens, y.tokens) for x, y in zip(a, c))


def test_resume_from_any_row_position(make_shards):
    ms = make_shards()
    full = _drain(_stream(_log(ms)))
    for k in (0, 3, len(full) // 2, len(full) - 2):
        pos = StreamPosition.from_dict(full[k].position.to_dict())
        rest = _drain(_stream(_log(ms), position=pos))
        assert len(rest) == len(full) - k - 1
        for x, y in zip(full[k + 1:], rest):
            assert np.array_equal(x.tokens, y.tokens)
            assert [s.occurrence for s in x.spans] == [s.occurrence for s in y.spans]


def test_heldout_shard_is_never_trained_and_every_doc_once_without_replay(make_shards):
    ms = make_shards(n_shards=5)
    rows = _drain(_stream(_log(ms), new_fraction=1.0))
    seen = collections.Counter()
    tokens_per_doc = collections.Counter()
    for r in rows:
        for s in r.spans:
            seen[s.doc.doc_id] += s.last
            tokens_per_doc[s.doc.doc_id] += s.length
    heldout_shard = ms[0].shard
    assert not any(s.doc.shard == heldout_shard for r in rows for s in r.spans)
    expected = {f"s{s:04d}-d{d:04d}" for s in range(1, 5) for d in range(12)}
    # every training document ended exactly once (the very last one may be cut by the final partial row)
    done = {d for d, n in seen.items() if n == 1}
    assert len(expected - done) <= 1 and not (set(seen) - expected)
    assert max(seen.values()) == 1


def test_replay_mix_ratio_and_new_shards_in_order(make_shards):
    ms = make_shards(n_shards=8, docs_per_shard=20)
    stream = _stream(_log(ms), new_fraction=0.5)
    rows = _drain(stream)
    new = sum(s.length for r in rows for s in r.spans if s.new)
    old = sum(s.length for r in rows for s in r.spans if not s.new)
    assert 0.3 < old / (new + old) < 0.5  # first round has no replay buffer yet
    rounds = [e for e in stream.events if e["event"] == "round"]
    assert [e["new_seq"] for e in rounds] == list(range(7))
    # replayed documents come only from the (bounded) buffer of recent shards
    first_new_round = {}
    for r in rows:
        for s in r.spans:
            if s.new:
                first_new_round.setdefault(s.doc.shard, s.occurrence[0])
    for r in rows:
        for s in r.spans:
            if not s.new:
                age = s.occurrence[0] - first_new_round[s.doc.shard]
                assert 1 <= age <= 3


@pytest.mark.parametrize("workers,kind", [(2, "thread"), (2, "process")])
def test_several_loader_workers_yield_the_same_rows(make_shards, workers, kind):
    ms = make_shards(n_shards=6)
    ref = _drain(_stream(_log(ms), workers=0))
    got = _drain(_stream(_log(ms), workers=workers, kind=kind))
    assert len(ref) == len(got)
    assert all(np.array_equal(x.tokens, y.tokens) for x, y in zip(ref, got))
    pieces = collections.defaultdict(list)
    for r in got:
        for s in r.spans:
            pieces[s.occurrence].append((s.offset, s.length, s.last, s.doc.n_tokens))
    for parts in pieces.values():  # each document's tokens tile it once, in order: nothing twice, no gap
        at = 0
        for offset, length, last, n in parts:
            assert offset == at
            at += length
        assert parts[-1][2] == (at == parts[-1][3])


def test_trains_on_replay_while_no_new_shard_arrives(make_shards):
    ms = make_shards(n_shards=3)
    log = _log(ms, close=False)
    stream = _stream(log, replay_when_idle=True, idle_round_docs=5)
    rows = [stream.next_row() for _ in range(60)]  # far more than the 2 training shards hold
    assert any(e["event"] == "round" and e["new_seq"] is None for e in stream.events)
    assert not rows[-1].spans[0].new
    stream.reader.close()


def test_damaged_shard_is_skipped(make_shards):
    ms = make_shards(n_shards=4)
    with open(ms[2].path, "r+b") as fh:
        fh.seek(600)
        fh.write(b"garbage!")
    stream = _stream(_log(ms), new_fraction=1.0)
    rows = _drain(stream)
    assert ms[2].shard in rows[-1].position.skipped_shards
    assert not any(s.doc.shard == ms[2].shard for r in rows for s in r.spans)
