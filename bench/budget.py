"""Value-driven token budgets on vs off: the same input stream, the trainer run twice.

    .venv/bin/python bench/budget.py [--steps 1200] [--seed 0] [--skip-k 16] [--out var/bench-budget] [--json] [--keep-work]

**In-process, no Kafka** (stated plainly: the loop below is the pipeline's and the trainer's real
modules called in one process, not the Faust agents). The input stream is real text from
``../shared/data`` (web pages, Chinese Wikipedia paragraphs, Chinese reviews, code-switched
Weibo posts as a "forum") mixed with generated sources, three of them deliberately low value
(word-salad ``synthetic`` text, navigation/cookie/footer ``boilerplate`` pages, ``repeated``
text: one sentence many times), and a poisoning event: from 20% of the stream on, the
``forum`` source floods near-duplicate spam. Exact duplicates are removed first (as the dedup
agent would; their rejections feed the allocator's flood guard). A SentencePiece model
(byte fallback) is trained on a sample of the stream.

The held-out set (the trainer's first shard, identical in both runs) is a balanced sample of
the *real* sources that never enters the stream: "quality" is held-out loss on real text.

Both runs use the real trainer (``trainer.loop.Trainer``, same config, same step count), fed
shard by shard from the stream as it asks for data:

* **budgets off**: every document that survives dedup is sharded. A *shadow* allocator sees the
  same value scores (and judges, at the end, which tokens were low value) but is never applied.
* **budgets on**: the trainer's ValueScores go to :class:`~streams.budget.allocator.BudgetAllocator`
  (a window every ``--window-tokens`` scored tokens); each BudgetUpdate is applied by the
  ``budget_prune`` stage to the documents of the next shards (before tokenization, as in the
  pipeline); inside admitted documents the trainer skips repeated token spans
  (its own ``data.skip_repeats_k``, ``trainer/token_prune.py``). Since it drops
  documents, this run reads further into the same stream for the same number of steps.

Printed: training tokens and FLOPs each run needed to reach the held-out loss the unpruned run
has at its end (first crossing, linear interpolation between evaluations), the saving, both
final held-out losses, the on-run's held-out loss when it had read as much of the stream as
the off-run, token utilization (share of trained tokens not judged low value at the end: the
document's source is not rated low value or flagged by the off-run's shadow allocator, the
same judge for both runs), what pruning removed by source / language / length, the flags the
poisoning guard raised, and both held-out loss curves into ``<out>/budget_loss.png``.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import shutil
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from schemas import CuratedDocument, Rejection, ValueScore  # noqa: E402
from streams.budget.allocator import AllocatorConfig, BudgetAllocator  # noqa: E402
from streams.budget.reader import StaticBudgetProvider  # noqa: E402
from streams.budget.report import format_report, items_from, removal_report  # noqa: E402
from streams.stages.budget_prune import BudgetPruneStage  # noqa: E402
from streams.stages.validate import content_hash  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
HELDOUT_PERCENT = 8

# --------------------------------------------------------------------------- the input stream


@dataclass
class Doc:
    id: str
    text: str
    source: str
    lang: str
    kind: str = "real"  # real | synthetic | boilerplate | repeated | flood
    tokens: np.ndarray | None = None
    hash: str = ""


def _read_jsonl(name: str, max_docs: int | None = None) -> list[dict]:
    out = []
    with gzip.open(DATA / f"{name}.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            if d.get("text") and len(d["text"].strip()) >= 20:
                out.append(d)
                if max_docs and len(out) >= max_docs:
                    break
    return out


def _heldout(doc_id: str) -> bool:
    return int(hashlib.sha1(doc_id.encode()).hexdigest()[:8], 16) % 100 < HELDOUT_PERCENT


def real_sources(max_chars: int = 6000) -> tuple[dict[str, list[Doc]], dict[str, list[Doc]]]:
    """Real documents per source, split into stream and held-out (by a hash of the id)."""
    files = {"web": ["web_cc_text", "web_extracted_text"], "zhwiki": ["zh_wiki_paragraphs"],
             "reviews": ["zh_reviews"], "forum": ["zh_en_codeswitch"]}
    stream: dict[str, list[Doc]] = {}
    held: dict[str, list[Doc]] = {}
    for source, names in files.items():
        docs = []
        for name in names:
            for d in _read_jsonl(name):
                lang = str(d.get("lang") or "unk").split("-")[0]
                docs.append(Doc(id=d["id"], text=d["text"][:max_chars], source=source, lang=lang))
        random.Random(source).shuffle(docs)
        stream[source] = [d for d in docs if not _heldout(d.id)]
        held[source] = [d for d in docs if _heldout(d.id)]
    return stream, held


_NAV = ["Home | About us | Products | Blog | Contact", "Skip to main content", "Menu  Search  Sign in  Register",
        "首页 | 关于我们 | 产品中心 | 新闻动态 | 联系我们", "您当前的位置：首页 > 新闻中心 > 正文",
        "We use cookies to improve your experience. By continuing you accept our cookie policy. Accept",
        "Privacy Policy | Terms of Use | Sitemap", "Share this: Facebook Twitter LinkedIn Email",
        "Related posts: Previous post Next post", "分享到：微信 微博 QQ空间", "上一篇 下一篇 相关文章 热门推荐",
        "Subscribe to our newsletter to get the latest updates.", "Log in | Create account | Help",
        "Back to top", "All categories > Electronics > Accessories", "Customer service: Mon-Fri 9:00-18:00"]
_TEMPLATES = ["Copyright © {year} {company} All rights reserved.", "Page {n} of {m}", "Item #{id} — ${price}",
              "版权所有 © {year} {company} 京ICP备{id}号", "Posted on {year}-{mm}-{dd} by admin",
              "{n} comments | {m} views", "Call us: 400-{id}", "Showing results {n}-{m} of {id}"]
_COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "星辰科技", "华夏商城"]


def boilerplate_doc(rng: random.Random, i: int) -> Doc:
    lines = []
    for _ in range(rng.randint(6, 18)):
        if rng.random() < 0.6:
            lines.append(rng.choice(_NAV))
        else:
            lines.append(rng.choice(_TEMPLATES).format(
                year=rng.randint(2005, 2025), company=rng.choice(_COMPANIES), n=rng.randint(1, 99),
                m=rng.randint(100, 999), id=rng.randint(10000, 99999), price=rng.randint(5, 500),
                mm=rng.randint(1, 12), dd=rng.randint(1, 28)))
    return Doc(id=f"boiler:{i}", text="\n".join(lines), source="boilerplate", lang="en", kind="boilerplate")


def repeated_doc(rng: random.Random, i: int, sentences: list[str]) -> Doc:
    s = rng.choice(sentences)
    reps = rng.randint(4, 16)
    sep = rng.choice(["\n", " ", "\n\n"])
    return Doc(id=f"repeat:{i}", text=sep.join([s] * reps), source="repeated", lang="en", kind="repeated")


_SPAM = ["【限时优惠】{p}只要{price}元！点击链接立即抢购 {url} #{tag}#", "转发抽奖！关注@{p}官方 送{price}元红包 {url}",
         "Hot deal!!! {p} only ${price} today, click {url} now #{tag}"]
_PRODUCTS = ["蓝牙耳机", "扫地机器人", "面膜套装", "smart watch", "手机壳", "保温杯"]


def flood_doc(rng: random.Random, i: int, last: list[str]) -> Doc:
    if last and rng.random() < 0.65:
        text = rng.choice(last)  # an exact copy: the dedup stage rejects it
    else:
        text = rng.choice(_SPAM).format(p=rng.choice(_PRODUCTS), price=rng.choice([9, 19, 29, 99]),
                                        url=f"http://t.cn/{rng.randint(100, 999)}", tag=rng.choice(["好物", "抢购"]))
        last.append(text)
        del last[:-50]
    return Doc(id=f"forum-flood:{i}", text=text, source="forum", lang="zh", kind="flood")


def synthetic_docs(n: int, seed: int):
    """The project's synthetic source (Zipf word salad in en / zh / code-switched), lazily."""
    from streams.sources.synthetic import SyntheticConfig, SyntheticSource

    for r in SyntheticSource(SyntheticConfig(n_docs=n, seed=seed, dup_rate=0.0), source="synthetic"):
        yield Doc(id=r.id, text=r.text, source="synthetic", lang=str(r.lang or "en").split("-")[0], kind="synthetic")


SHARES = {"web": 0.28, "zhwiki": 0.12, "reviews": 0.08, "forum": 0.08,
          "synthetic": 0.14, "boilerplate": 0.12, "repeated": 0.12}
FLOOD_AT = 0.20  # share of the stream after which the forum floods


def build_stream(real: dict[str, list[Doc]], total_chars: int, seed: int) -> list[Doc]:
    """Interleave the sources so each keeps (about) its share of the characters at every point."""
    rng = random.Random(seed)
    sentences = [s.strip() for d in real["web"][:400] if d.lang == "en" for s in d.text.split(".")
                 if 60 <= len(s.strip()) <= 200]
    synth = iter(synthetic_docs(200_000, seed))
    pos = {k: 0 for k in real}
    emitted = {k: 1.0 for k in SHARES}
    flood_last: list[str] = []
    out: list[Doc] = []
    done = 0
    counters = Counter()
    while done < total_chars:
        src = min(SHARES, key=lambda k: (emitted[k] / SHARES[k]) * (1.0 + 0.2 * rng.random()))
        counters[src] += 1
        if src == "forum" and done >= FLOOD_AT * total_chars:
            doc = flood_doc(rng, counters[src], flood_last)
        elif src in real:
            docs = real[src]
            if pos[src] >= len(docs):
                raise SystemExit(f"source {src} ran out of documents; lower --steps")
            doc = docs[pos[src]]
            pos[src] += 1
        elif src == "synthetic":
            doc = next(synth)
        elif src == "boilerplate":
            doc = boilerplate_doc(rng, counters[src])
        else:
            doc = repeated_doc(rng, counters[src], sentences)
        n = len(doc.text)
        emitted[src] += n
        done += n
        out.append(doc)
    return out


def balanced_heldout(held: dict[str, list[Doc]], max_chars: int = 500, n_per_source: int = 60) -> list[Doc]:
    """Round-robin over the real sources, each piece cut to ``max_chars`` (so the probe rows mix them)."""
    out = []
    for i in range(n_per_source):
        for source in sorted(held):
            if i < len(held[source]):
                d = held[source][i]
                out.append(Doc(id=d.id, text=d.text[:max_chars], source=d.source, lang=d.lang))
    return out


# --------------------------------------------------------------------------- tokenizer


def tokenizer_for(stream: list[Doc], work: Path, vocab: int):
    """A byte-fallback unigram SentencePiece model on the first third of the stream (cached by content).

    Small vocabulary (the trainer's output layer dominates its cost on CPU): characters outside
    98% coverage (rare CJK) fall back to bytes.
    """
    import io

    import sentencepiece as spm

    sample, used = [], 0
    for d in stream[: len(stream) // 3]:
        line = " ".join(d.text.split())[:8000]
        sample.append(line)
        used += len(line.encode())
        if used > 3_000_000:
            break
    key = hashlib.sha1(json.dumps([vocab, sample[:20], len(sample)]).encode()).hexdigest()[:12]
    path = work / f"tokenizer-{key}.model"
    if not path.exists():
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sample), model_writer=model, vocab_size=vocab, model_type="unigram",
            byte_fallback=True, character_coverage=0.98, num_threads=1, shuffle_input_sentence=False,
            input_sentence_size=0, max_sentence_length=8192, minloglevel=2)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(model.getvalue())
        tmp.replace(path)
    return spm.SentencePieceProcessor(model_file=str(path)), path


def calibrate(sp, docs: list[Doc]) -> tuple[float, float]:
    """bytes_per_token and cjk_chars_per_token for the stage's token estimate (least squares, no intercept)."""
    import re

    cjk = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
    rows, ys = [], []
    for d in docs[:2000]:
        n_cjk = len(cjk.findall(d.text))
        other = len(d.text.encode("utf-8")) - 3 * n_cjk
        rows.append([n_cjk, other])
        ys.append(len(d.tokens))
    coef, *_ = np.linalg.lstsq(np.array(rows, float), np.array(ys, float), rcond=None)
    a, b = max(coef[0], 1e-3), max(coef[1], 1e-3)
    return 1.0 / b, 1.0 / a


# --------------------------------------------------------------------------- the closed loop


class Feedback:
    """The trainer's value publisher: scores go to the allocator, windows close, budgets apply."""

    def __init__(self, allocator: BudgetAllocator, window_tokens: int, provider: StaticBudgetProvider | None):
        self.allocator = allocator
        self.window_tokens = window_tokens
        self.provider = provider
        self.records: list[ValueScore] = []
        self.updates: list[dict[str, Any]] = []

    def publish(self, records: list[ValueScore]) -> None:
        self.records.extend(r for r in records if not r.doc_id.startswith("aggregate:"))
        self.allocator.observe_all(records)
        if self.allocator.pending_tokens >= self.window_tokens:
            upd = self.allocator.close_window()
            if upd is None:
                return
            rep = self.allocator.report()
            self.updates.append({"version": upd.budget_version, "weights": dict(upd.weights),
                                 "flagged": list(upd.flagged), "flags": rep.get("flags", {}),
                                 "sources": {k: {n: round(x, 4) if isinstance(x, float) else x for n, x in v.items()}
                                             for k, v in rep.get("sources", {}).items()},
                                 "trained_tokens": sum(r.n_tokens for r in self.records)})
            if self.provider is not None:
                self.provider.set(upd)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class StreamFeed:
    """A ShardFeed that builds the next shard from the stream when the trainer is about to need it."""

    def __init__(self, stream: list[Doc], heldout: list[Doc], work: Path, vocab_size: int, *,
                 stage: BudgetPruneStage | None, allocator: BudgetAllocator, raw_tokens_per_shard: int,
                 ahead: int = 2):
        self.stream, self.heldout, self.work = stream, heldout, work
        self.vocab_size = vocab_size
        self.stage, self.allocator = stage, allocator
        self.raw_tokens_per_shard = raw_tokens_per_shard
        self.ahead = ahead
        self.trainer = None
        self.pos = 0  # next stream index
        self.offset = 0  # feed offset of the next shard
        self.seen_hashes: set[str] = set()
        self.kept: list[Doc] = []
        self.rejections: list[Rejection] = []
        self.raw_tokens_read = 0
        self.shard_raw_end: list[int] = []  # raw tokens read through each training shard
        self.heldout_path: str | None = None
        self.exhausted = False

    def _write(self, docs: list[Doc]):
        from trainer.synthetic_shards import SyntheticDoc, write_shard

        sd = [SyntheticDoc(tokens=d.tokens, id=d.id, source=d.source, lang=d.lang, meta={"kind": d.kind})
              for d in docs]
        return write_shard(self.work / "data", sd, vocab_size=self.vocab_size, first_offset=self.offset * 100_000)

    def _next_shard(self):
        from trainer.shard_feed import FeedItem

        batch: list[Doc] = []
        raw = 0
        while raw < self.raw_tokens_per_shard and self.pos < len(self.stream):
            d = self.stream[self.pos]
            self.pos += 1
            raw += len(d.tokens)
            batch.append(d)
        if not batch:
            self.exhausted = True
            return None
        self.raw_tokens_read += raw
        docs: list[CuratedDocument] = []
        by_id = {}
        for d in batch:
            cd = CuratedDocument(id=d.id, text=d.text, source=d.source, lang=d.lang, content_hash=d.hash,
                                 recipe_version="bench")
            if d.hash in self.seen_hashes:  # the dedup agent's verdict
                rej = Rejection(id=d.id, reason="duplicate", stage="dedup", recipe_version="bench", source=d.source,
                                n_bytes=len(d.text.encode("utf-8")))
                self.rejections.append(rej)
                self.allocator.observe_rejection(rej)
                continue
            self.seen_hashes.add(d.hash)
            docs.append(cd)
            by_id[d.id] = d
        outcomes = self.stage.process_batch(docs) if self.stage is not None else docs
        kept = []
        for o in outcomes:
            if isinstance(o, Rejection):
                self.rejections.append(o)
            else:
                kept.append(by_id[o.id])
        self.kept.extend(kept)
        if not kept:
            return self._next_shard()
        m = self._write(kept)
        self.shard_raw_end.append(self.raw_tokens_read)
        item = FeedItem(self.offset, m)
        self.offset += 1
        return item

    def pending(self) -> int:
        s = self.trainer.session if self.trainer is not None else None
        if s is None or s.stream is None:
            return len(self.shard_raw_end)
        return s.log.n_train - s.stream.pos.next_new

    def poll(self, timeout: float):
        from trainer.shard_feed import FeedItem

        items = []
        if self.heldout_path is None:
            m = self._write(self.heldout)
            self.heldout_path = m.path
            items.append(FeedItem(self.offset, m))
            self.offset += 1
        while not self.exhausted and self.pending() + len([i for i in items if i.manifest.path != self.heldout_path]) \
                < self.ahead:
            item = self._next_shard()
            if item is None:
                break
            items.append(item)
        return items

    def seek(self, next_offset: int) -> None:
        pass

    def close(self) -> None:
        pass


def run_trainer(name: str, args, stream: list[Doc], heldout: list[Doc], vocab_size: int, work: Path, *,
                budgets: bool, stage_params: dict[str, Any]) -> dict[str, Any]:
    from trainer.config import load_config
    from trainer.loop import Trainer

    cfg = load_config("tiny", {
        "model": {"n_layer": 2, "n_head": 2, "n_embd": args.n_embd, "block_size": 64},
        "data": {"micro_batch_rows": 16, "replay_shards": 4, "heldout_shards": 1, "heldout_max_rows": 160,
                 "loader_workers": 1, "prefetch_rows": 64, "verify_sha256": False, "max_doc_tokens": 2048,
                 # budgets on: the trainer-side skip of repeated spans (held-out shards are never cut)
                 "skip_repeats_k": args.skip_k if budgets else 0},
        "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 50, "decay": "cosine", "decay_steps": args.steps},
        "eval": {"every": args.eval_every}, "checkpoint": {"every": 0}, "export": {"every": 0},
        "value": {"enabled": True, "every": 1, "direction_every": 20, "probe_rows": 32, "difference": "forward",
                  "publish_every": 10},
        # the fixed schedule in both runs: no skipped steps, no batch growth, so a step is 1024 tokens
        "adaptive": {"enabled": False},
        "log_every": 0, "torch_threads": args.threads, "device": "cpu"})
    alloc = BudgetAllocator(AllocatorConfig(**args.alloc))
    provider = StaticBudgetProvider() if budgets else None
    stage = BudgetPruneStage(provider, **stage_params) if budgets else None
    run_dir = work / name
    shutil.rmtree(run_dir, ignore_errors=True)
    feed = StreamFeed(stream, heldout, run_dir, vocab_size, stage=stage, allocator=alloc,
                      raw_tokens_per_shard=args.shard_tokens)
    pub = Feedback(alloc, args.window_tokens, provider)
    raw_at_step: dict[int, int] = {}

    def on_batch(step: int, batch, out) -> None:
        pos = batch.position
        seq = pos.round_new if pos.round_new is not None else pos.next_new - 1
        raw_at_step[step + 1] = feed.shard_raw_end[min(max(seq, 0), len(feed.shard_raw_end) - 1)]

    trainer = Trainer(cfg, run_dir, feed, pub, max_steps=args.steps, final_checkpoint=False, on_batch=on_batch)
    feed.trainer = trainer
    t0 = time.perf_counter()
    summary = trainer.run()
    seconds = time.perf_counter() - t0
    events = []
    for f in (run_dir / "runs").glob("*/events.jsonl"):
        events += [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    evals = sorted((e for e in events if e.get("event") == "eval"), key=lambda e: e["step"])
    curve = [(e["step"], e["train_tokens"], e["train_flops"], e["heldout_loss"]) for e in evals]
    pos = trainer.session.position if trainer.session else None  # the trainer's own repeat-skip counts
    return {"name": name, "summary": summary, "curve": curve, "seconds": seconds, "allocator": alloc,
            "feed": feed, "publisher": pub, "skipped": pos.repeat_tokens_skipped if pos else 0,
            "skip_seen": pos.repeat_tokens_read if pos else 0, "raw_at_step": raw_at_step,
            "flops_per_token": trainer.session.flops_per_token if trainer.session else 0,
            "params": trainer.session.model.n_params() if trainer.session else 0}


# --------------------------------------------------------------------------- figures


def first_reach(curve: list[tuple], target: float) -> tuple[float, float] | None:
    """(tokens, flops) where the held-out loss first reaches ``target`` (linear interpolation)."""
    prev = None
    for step, tok, flops, loss in curve:
        if loss <= target:
            if prev is None or prev[3] == loss:
                return float(tok), float(flops)
            f = (prev[3] - target) / (prev[3] - loss)
            return prev[1] + f * (tok - prev[1]), prev[2] + f * (flops - prev[2])
        prev = (step, tok, flops, loss)
    return None


def loss_at_raw(run: dict[str, Any], raw: float) -> float | None:
    """The run's held-out loss when it had read ``raw`` tokens of the stream (interpolated)."""
    pts = [(run["raw_at_step"].get(step), loss) for step, _, _, loss in run["curve"]]
    pts = [(r, l) for r, l in pts if r is not None]
    for (r0, l0), (r1, l1) in zip(pts, pts[1:]):
        if r0 <= raw <= r1:
            return l0 if r1 == r0 else l0 + (raw - r0) / (r1 - r0) * (l1 - l0)
    return None


def utilization(records: list[ValueScore], judge: BudgetAllocator) -> tuple[float, dict[str, float]]:
    total, low = 0.0, 0.0
    by_src: dict[str, float] = defaultdict(float)
    for r in records:
        total += r.n_tokens
        by_src[r.source] += r.n_tokens
        if judge.judged_low_value(r.source):
            low += r.n_tokens
    return (1.0 - low / total if total else float("nan")), {k: v / total for k, v in by_src.items()}


def plot(off: dict, on: dict, target: float, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (.venv/bin/pip install matplotlib)")
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    for run, label in ((off, "budgets off"), (on, "budgets on")):
        ax.plot([c[1] / 1e6 for c in run["curve"]], [c[3] for c in run["curve"]], marker=".", label=label)
    ax.axhline(target, color="grey", linestyle=":", label=f"final loss, budgets off ({target:.3f})")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("held-out loss (nats/token)")
    ax.set_title("Held-out loss vs training tokens, same input stream")
    ax.grid(alpha=0.3)
    ax.legend()
    lo = min(min(c[3] for c in off["curve"]), min(c[3] for c in on["curve"]))
    ax.set_ylim(lo - 0.1, lo + 2.0)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1200, help="trainer steps per run (16 x 64 tokens each)")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--n-embd", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    ap.add_argument("--window-tokens", type=int, default=30_000, help="scored tokens per budget window")
    ap.add_argument("--shard-tokens", type=int, default=8_000, help="raw stream tokens per shard")
    ap.add_argument("--skip-k", type=int, default=16, help="trainer-side skip: repeated spans of >= k tokens (0: off)")
    ap.add_argument("--stream-mchars", type=float, default=None, help="stream size in million characters")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="allocator setting, e.g. source_floor=0.05")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "var" / "bench-budget")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep-work", action="store_true", help="keep the runs' shards and logs in <out>/work")
    args = ap.parse_args()
    args.alloc = {}
    for s in args.sets:
        k, v = s.split("=", 1)
        args.alloc[k] = json.loads(v) if v[:1] in "[{" else (float(v) if "." in v or "e" in v else int(v))
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    t_start = time.perf_counter()

    real, held = real_sources()
    heldout = balanced_heldout(held)
    # the budgets-on run reads further into the same stream: about 2.5x what the off-run reads
    mchars = args.stream_mchars or max(1.0, args.steps * 16 * 64 * 2.6 / 1e6)
    stream = build_stream(real, int(mchars * 1e6), args.seed)
    sp, tok_path = tokenizer_for(stream, args.out, args.vocab)
    vocab_size = sp.get_piece_size()
    for d, ids in zip(stream, sp.encode([d.text for d in stream])):
        d.tokens = np.asarray(ids, dtype=np.int64)
        d.hash = content_hash(d.text)
    for d, ids in zip(heldout, sp.encode([d.text for d in heldout])):
        d.tokens = np.asarray(ids, dtype=np.int64)
    bpt, cpt = calibrate(sp, stream)
    stage_params = {"bytes_per_token": round(bpt, 3), "cjk_chars_per_token": round(cpt, 3)}
    prep_s = time.perf_counter() - t_start
    raw_by_kind = Counter()
    for d in stream:
        raw_by_kind[d.source if d.kind == "real" else d.kind] += len(d.tokens)
    total_raw = sum(raw_by_kind.values())

    off = run_trainer("off", args, stream, heldout, vocab_size, work, budgets=False, stage_params=stage_params)
    on = run_trainer("on", args, stream, heldout, vocab_size, work, budgets=True, stage_params=stage_params)

    target = off["curve"][-1][3]
    reach_off = first_reach(off["curve"], target)
    reach_on = first_reach(on["curve"], target)
    saving = (1.0 - reach_on[0] / reach_off[0]) if reach_on and reach_off else None
    judge = off["allocator"]
    util_off, mix_off = utilization(off["publisher"].records, judge)
    util_on, mix_on = utilization(on["publisher"].records, judge)
    same_raw = loss_at_raw(on, off["feed"].raw_tokens_read)
    plotted = plot(off, on, target, args.out / "budget_loss.png")
    pruned = [r for r in on["feed"].rejections if r.reason == "budget_pruned"]
    rep = removal_report(items_from([{"source": d.source, "lang": d.lang, "n_bytes": len(d.text.encode())}
                                     for d in on["feed"].kept], pruned), min_docs=20)
    flag_events = []
    for u in on["publisher"].updates:
        for src, reasons in u["flags"].items():
            flag_events.append((u["version"], src, tuple(reasons)))
    first_flags: dict[tuple[str, tuple], int] = {}
    for v, src, reasons in flag_events:
        first_flags.setdefault((src, reasons), v)
    last_weights = on["publisher"].updates[-1]["weights"] if on["publisher"].updates else {}

    result = {
        "sizes": {"steps": args.steps, "tokens_per_step": 16 * 64, "n_layer": 2, "n_embd": args.n_embd,
                  "vocab": vocab_size, "params": off["params"], "flops_per_token": off["flops_per_token"],
                  "stream_raw_tokens": total_raw,
                  "stream_raw_tokens_by_source": dict(raw_by_kind), "heldout_docs": len(heldout),
                  "window_tokens": args.window_tokens, "shard_raw_tokens": args.shard_tokens,
                  "torch_threads": args.threads, "prep_s": prep_s},
        "target_loss": target,
        "off": {"final_loss": target, "tokens_to_target": reach_off and reach_off[0],
                "flops_to_target": reach_off and reach_off[1], "train_tokens": off["summary"].train_tokens,
                "raw_stream_tokens_read": off["feed"].raw_tokens_read, "utilization": util_off,
                "trained_mix": mix_off, "seconds": off["seconds"]},
        "on": {"final_loss": on["curve"][-1][3], "tokens_to_target": reach_on and reach_on[0],
               "flops_to_target": reach_on and reach_on[1], "train_tokens": on["summary"].train_tokens,
               "raw_stream_tokens_read": on["feed"].raw_tokens_read, "utilization": util_on,
               "trained_mix": mix_on, "seconds": on["seconds"], "loss_at_off_stream_position": same_raw,
               "budget_pruned_docs": len(pruned), "kept_docs": len(on["feed"].kept),
               "trainer_skipped_tokens": on["skipped"], "trainer_skip_share": on["skipped"] / max(on["skip_seen"], 1),
               "budget_versions": len(on["publisher"].updates), "last_weights": {k: v for k, v in last_weights.items()
                                                                                  if "|" not in k}},
        "saving": saving,
        "flags": [{"source": s, "reasons": list(r), "first_version": v} for (s, r), v in first_flags.items()],
        "curves": {"off": off["curve"], "on": on["curve"]},
        "updates": {"off_shadow": off["publisher"].updates, "on": on["publisher"].updates},
        "plot": str(args.out / "budget_loss.png") if plotted else None,
        "seconds": time.perf_counter() - t_start,
        "stage_params": stage_params,
    }
    (args.out / "budget_result.json").write_text(json.dumps(result, indent=2, default=str))
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return
    sz = result["sizes"]
    print(f"in-process, no Kafka; trainer: 2 layers x {args.n_embd} wide, vocab {vocab_size}, "
          f"{args.steps} steps x 1024 tokens, {args.threads} torch thread(s); stream {total_raw / 1e6:.2f} M tokens")
    print("stream by source (tokens): " + ", ".join(f"{k} {v / total_raw:.0%}" for k, v in raw_by_kind.most_common()))
    print(f"{'':28} {'budgets off':>14} {'budgets on':>14}")
    fmt = lambda x, f: "not reached" if x is None else f.format(x)  # noqa: E731
    print(f"{'tokens to reach L*':28} {fmt(reach_off and reach_off[0] / 1e6, '{:>12.3f} M'):>14} "
          f"{fmt(reach_on and reach_on[0] / 1e6, '{:>12.3f} M'):>14}")
    print(f"{'FLOPs to reach L*':28} {fmt(reach_off and reach_off[1], '{:>14.3e}'):>14} "
          f"{fmt(reach_on and reach_on[1], '{:>14.3e}'):>14}")
    print(f"{'final held-out loss':28} {target:>14.4f} {result['on']['final_loss']:>14.4f}")
    print(f"{'training tokens (total)':28} {off['summary'].train_tokens:>14} {on['summary'].train_tokens:>14}")
    print(f"{'stream tokens read':28} {off['feed'].raw_tokens_read:>14} {on['feed'].raw_tokens_read:>14}")
    print(f"{'token utilization':28} {util_off:>14.1%} {util_on:>14.1%}")
    print(f"{'seconds':28} {off['seconds']:>14.0f} {on['seconds']:>14.0f}")
    print(f"L* = {target:.4f} (budgets off, final). Saving to reach L*: "
          + ("n/a (not reached)" if saving is None else f"{saving:.1%} of training tokens and FLOPs")
          + f"; target >= 20% with final loss no worse: "
          + ("met" if saving is not None and saving >= 0.2 and result['on']['final_loss'] <= target else "NOT met"))
    if same_raw is not None:
        print(f"budgets on, held-out loss when it had read as much of the stream as the off-run: {same_raw:.4f}")
    print(f"trainer-side: {on['skipped']} repeated tokens skipped ({result['on']['trainer_skip_share']:.1%} of the "
          f"admitted tokens); {len(pruned)} documents budget_pruned, {len(on['feed'].kept)} kept; "
          f"{result['on']['budget_versions']} budget versions")
    print("last keep rates: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(result['on']['last_weights'].items())))
    print("trained mix (off -> on): " + ", ".join(f"{k} {mix_off.get(k, 0):.0%}->{mix_on.get(k, 0):.0%}"
                                                 for k in sorted(set(mix_off) | set(mix_on))))
    for f in result["flags"]:
        print(f"flagged: {f['source']} {'+'.join(f['reasons'])} from budget version {f['first_version']}")
    print(format_report(rep, max_rows=12))
    if plotted:
        print(f"plot: {result['plot']}")
    print(f"total {result['seconds']:.0f} s (data + tokenizer {prep_s:.0f} s)")


if __name__ == "__main__":
    main()
