"""Value scores: memorized repeats score below fresh text, random garbage scores low; the
finite difference is the gradient dot product it claims to be; records reach the publisher."""
from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch

from trainer.batching import collate
from trainer.config import ModelConfig
from trainer.loop import Trainer
from trainer.model import GPT, token_losses
from trainer.shard_feed import ListShardFeed
from trainer.shard_stream import DocInfo, Row, Span, StreamPosition
from trainer.synthetic_shards import MarkovLanguage, SyntheticDoc, garbage, write_shard
from trainer.value import AGGREGATE_PREFIX, METHOD, ValueScorer
from trainer.value_publisher import MemoryValuePublisher

VOCAB = 64


@pytest.mark.parametrize("difference", ["central", "forward"])
def test_memorized_repeats_score_below_fresh_text_and_garbage_scores_low(tmp_path, trainer_config, difference):
    lang = MarkovLanguage(VOCAB, seed=3)
    rng = np.random.default_rng(0)
    repeat = lang.sample(rng, 30)
    manifests = []
    for s in range(30):
        docs = [SyntheticDoc(lang.sample(rng, int(rng.integers(20, 40))), id=f"fresh-{s}-{i}", source="fresh")
                for i in range(10)]
        if s > 0:  # shard 0 is the held-out set: fresh text only
            docs.append(SyntheticDoc(repeat, id="repeat", source="repeat"))  # the same document in every shard
            docs.append(SyntheticDoc(garbage(rng, VOCAB, 30), id=f"garbage-{s}", source="garbage"))
        manifests.append(write_shard(tmp_path / "data", docs, vocab_size=VOCAB, first_offset=s * 100))
    pub = MemoryValuePublisher()
    cfg = trainer_config(value={"difference": difference})
    summary = Trainer(cfg, tmp_path / "run", ListShardFeed(manifests), pub, until_idle=0.2).run()
    assert summary.stop_reason == "idle"
    docs = [r for r in pub.records if not r.doc_id.startswith(AGGREGATE_PREFIX)]
    late = summary.final_step // 2  # once the repeat has been seen often enough to be memorized

    def mean(source):
        vals = [r.value for r in docs if r.source == source and r.trainer_step >= late]
        assert len(vals) >= 5, source
        return statistics.mean(vals)

    fresh, repeated, junk = mean("fresh"), mean("repeat"), mean("garbage")
    assert repeated < 0.5 * fresh, (fresh, repeated)
    assert junk < 0 < fresh, (fresh, junk)
    # the per-source aggregates tell the same story
    agg = {r.doc_id: r for r in pub.records if r.doc_id.startswith(AGGREGATE_PREFIX) and r.trainer_step >= late}
    assert agg and all(r.method == METHOD + "/mean" for r in agg.values())
    assert {r.source for r in docs} == {"fresh", "repeat", "garbage"}
    assert all(r.method == METHOD and r.model_version.startswith(summary.runs[0]) for r in docs)


def test_finite_difference_equals_the_gradient_dot_product():
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=16), VOCAB + 1).double()
    probe = torch.randint(0, VOCAB, (3, 17))
    scorer = ValueScorer(model, probe, epsilon=1e-4)
    scorer.refresh_direction()
    rows = []
    for b in range(2):  # two documents per row: targets 1..7 belong to doc A, 10..15 to doc B
        toks = np.random.default_rng(b).integers(0, VOCAB, 17)
        spans = [Span((b, 0), DocInfo(f"a{b}", "s", "sh", 8), 0, 8, 0, True, True),
                 Span((b, 1), DocInfo(f"b{b}", "s", "sh", 7), 9, 7, 0, True, True)]
        rows.append(Row(toks, spans, StreamPosition(rng_state={})))
    batch = collate(rows)
    sums, counts = scorer.score(batch)
    assert counts.tolist() == [7, 6, 7, 6]
    params = [p for p in model.parameters()]
    losses = token_losses(model, batch.tokens)
    for slot in range(4):
        mask = batch.target_doc == slot
        grad = torch.autograd.grad(losses[mask].mean(), params, retain_graph=True)
        dot = sum((g * u).sum() for g, u in zip(grad, scorer.direction)).item()
        assert abs(sums[slot].item() / counts[slot].item() - dot) < 1e-6 * max(1.0, abs(dot))
    # the weights are exactly restored
    again = token_losses(model, batch.tokens)
    assert torch.equal(again, losses.detach())
    # the one-sided difference (base losses from the training pass) agrees to first order
    one_sided, _ = scorer.score(batch, base=losses.detach())
    assert torch.allclose(one_sided / counts, sums / counts, rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("difference,every", [("forward", 1), ("central", 1), ("forward", 3)])
def test_scoring_flops_count_the_extra_passes_and_the_probe_refreshes(tmp_path, make_shards, trainer_config,
                                                                       difference, every):
    from trainer.checkpoint import CheckpointStore

    ms = make_shards(n_shards=6, docs_per_shard=30)
    steps, direction_every = 12, 5
    cfg = trainer_config(value={"difference": difference, "every": every, "direction_every": direction_every},
                         adaptive={"enabled": False}, checkpoint={"every": 0})
    Trainer(cfg, tmp_path / "run", ListShardFeed(ms), MemoryValuePublisher(), max_steps=steps).run()
    run = next((tmp_path / "run" / "runs").iterdir())
    state = CheckpointStore(run / "checkpoints").load_latest()
    model = GPT(cfg.model, VOCAB + 1)
    fpt, tokens_per_step = model.flops_per_token(), 4 * 32  # micro config: 4 rows of 32 targets, one micro-batch
    scored = [s for s in range(steps) if s % every == 0]
    refreshes = len([s for s in scored if s == scored[0] or s % direction_every == 0])
    passes = 1 if difference == "forward" else 2
    want = len(scored) * passes * tokens_per_step * fpt // 3 + refreshes * 4 * 32 * fpt
    assert state["train_flops"] == steps * tokens_per_step * fpt
    assert state["score_flops"] == want


def test_sampled_steps_still_score_documents_that_end_in_an_unscored_step(tmp_path, make_shards, trainer_config):
    ms = make_shards(n_shards=8, docs_per_shard=20, doc_len=(100, 200))  # a document spans 1-2 steps of 128 tokens
    cfg = trainer_config(value={"every": 2}, adaptive={"enabled": False})
    touched: set[str] = set()

    def on_batch(step, batch, out):
        if step % 2 == 0:
            touched.update(slot.doc.doc_id for slot in batch.docs)

    pub = MemoryValuePublisher()
    Trainer(cfg, tmp_path / "run", ListShardFeed(ms), pub, max_steps=40, on_batch=on_batch).run()
    scored = {r.doc_id for r in pub.records if not r.doc_id.startswith(AGGREGATE_PREFIX)}
    assert scored <= touched  # only documents with tokens in a scored step
    assert len(scored) >= 0.9 * len(touched), (len(scored), len(touched))
