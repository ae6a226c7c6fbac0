"""The budget benchmark's input: real sources, generated low-value sources, a flood, and the held-out sets.

Real text comes from ``../shared/data`` (web pages, Chinese Wikipedia paragraphs, Chinese
reviews, code-switched Weibo posts as a "forum"); three generated sources are deliberately
low value (word-salad ``synthetic``, navigation/cookie/footer ``boilerplate`` pages,
``repeated``: one real sentence many times), and from ``FLOOD_AT`` of the stream on the
``forum`` source floods near-duplicate spam, mostly exact copies. The boilerplate and spam
texts are ``streams.sources.low_value``'s (``foundry generate --kind``); the repeats here
repeat real sentences of the web source, not that module's template sentences.

A hash of each real document's id sets 8 % of every real source aside; it never enters the
stream. That reserve is split again by another hash into two disjoint halves: the *probe*
(the trainer's value scores' held-out gradient: it steers the budgets) and the *evaluation*
set (the reported held-out loss: it steers nothing).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streams.sources.low_value import boilerplate_text, spam_text

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
HELDOUT_PERCENT = 8
REAL_FILES = {"web": ["web_cc_text", "web_extracted_text"], "zhwiki": ["zh_wiki_paragraphs"],
              "reviews": ["zh_reviews"], "forum": ["zh_en_codeswitch"]}
SHARES = {"web": 0.28, "zhwiki": 0.12, "reviews": 0.08, "forum": 0.08,
          "synthetic": 0.14, "boilerplate": 0.12, "repeated": 0.12}
FLOOD_AT = 0.20  # share of the stream after which the forum floods
LOW_VALUE_KINDS = ("synthetic", "boilerplate", "repeated", "flood")


@dataclass
class Doc:
    id: str
    text: str
    source: str
    lang: str
    kind: str = "real"  # real | synthetic | boilerplate | repeated | flood
    tokens: np.ndarray | None = None
    hash: str = ""


def _read_jsonl(name: str) -> list[dict]:
    out = []
    with gzip.open(DATA / f"{name}.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            if d.get("text") and len(d["text"].strip()) >= 20:
                out.append(d)
    return out


def _bucket(doc_id: str, salt: str) -> int:
    return int(hashlib.sha1((salt + doc_id).encode()).hexdigest()[:8], 16) % 100


def real_sources(max_chars: int = 6000) -> tuple[dict[str, list[Doc]], dict[str, list[Doc]], dict[str, list[Doc]]]:
    """Real documents per source: (stream, probe, evaluation), split by hashes of the ids."""
    stream: dict[str, list[Doc]] = {}
    probe: dict[str, list[Doc]] = {}
    evals: dict[str, list[Doc]] = {}
    for source, names in REAL_FILES.items():
        docs = []
        for name in names:
            for d in _read_jsonl(name):
                lang = str(d.get("lang") or "unk").split("-")[0]
                docs.append(Doc(id=d["id"], text=d["text"][:max_chars], source=source, lang=lang))
        random.Random(source).shuffle(docs)
        held = [d for d in docs if _bucket(d.id, "") < HELDOUT_PERCENT]
        stream[source] = [d for d in docs if _bucket(d.id, "") >= HELDOUT_PERCENT]
        probe[source] = [d for d in held if _bucket(d.id, "probe/") < 50]
        evals[source] = [d for d in held if _bucket(d.id, "probe/") >= 50]
    return stream, probe, evals


def balanced(held: dict[str, list[Doc]], max_chars: int = 500, n_per_source: int = 60) -> list[Doc]:
    """Round-robin over the real sources, each piece cut to ``max_chars`` (so any prefix mixes them)."""
    out = []
    for i in range(n_per_source):
        for source in sorted(held):
            if i < len(held[source]):
                d = held[source][i]
                out.append(Doc(id=d.id, text=d.text[:max_chars], source=d.source, lang=d.lang))
    return out


def probe_prefix(docs: list[Doc], rows: int, row_len: int) -> list[Doc]:
    """The documents the trainer's probe packer takes for ``rows`` rows (whole documents, each plus
    one boundary token, until the rows are full: ``trainer.evaluation``'s rule)."""
    out, total = [], 0
    for d in docs:
        if total >= rows * row_len:
            break
        out.append(d)
        total += len(d.tokens) + 1
    return out


# --------------------------------------------------------------------------- generated sources

def boilerplate_doc(rng: random.Random, i: int) -> Doc:
    return Doc(id=f"boiler:{i}", text=boilerplate_text(rng), source="boilerplate", lang="en", kind="boilerplate")


def repeated_doc(rng: random.Random, i: int, sentences: list[str]) -> Doc:
    s = rng.choice(sentences)
    sep = rng.choice(["\n", " ", "\n\n"])
    return Doc(id=f"repeat:{i}", text=sep.join([s] * rng.randint(4, 16)), source="repeated", lang="en",
               kind="repeated")


def flood_doc(rng: random.Random, i: int, last: list[str]) -> Doc:
    if last and rng.random() < 0.65:
        text = rng.choice(last)  # an exact copy: the dedup stage rejects it
    else:
        text = spam_text(rng)
        last.append(text)
        del last[:-50]
    return Doc(id=f"forum-flood:{i}", text=text, source="forum", lang="zh", kind="flood")


def synthetic_docs(n: int, seed: int):
    """The project's synthetic source (Zipf word salad in en / zh / code-switched), lazily."""
    from streams.sources.synthetic import SyntheticConfig, SyntheticSource

    for r in SyntheticSource(SyntheticConfig(n_docs=n, seed=seed, dup_rate=0.0), source="synthetic"):
        yield Doc(id=r.id, text=r.text, source="synthetic", lang=str(r.lang or "en").split("-")[0], kind="synthetic")


def build_stream(real: dict[str, list[Doc]], total_chars: int, seed: int) -> list[Doc]:
    """Interleave the sources so each keeps (about) its share of the characters at every point."""
    rng = random.Random(seed)
    sentences = [s.strip() for d in real["web"][:400] if d.lang == "en" for s in d.text.split(".")
                 if 60 <= len(s.strip()) <= 200]
    synth = iter(synthetic_docs(400_000, seed))
    pos = {k: 0 for k in real}
    emitted = {k: 1.0 for k in SHARES}
    flood_last: list[str] = []
    out: list[Doc] = []
    done = 0
    counters: Counter = Counter()
    while done < total_chars:
        src = min(SHARES, key=lambda k: (emitted[k] / SHARES[k]) * (1.0 + 0.2 * rng.random()))
        counters[src] += 1
        if src == "forum" and done >= FLOOD_AT * total_chars:
            doc = flood_doc(rng, counters[src], flood_last)
        elif src in real:
            if pos[src] >= len(real[src]):
                raise SystemExit(f"source {src} ran out of documents; lower --steps")
            doc = real[src][pos[src]]
            pos[src] += 1
        elif src == "synthetic":
            doc = next(synth)
        elif src == "boilerplate":
            doc = boilerplate_doc(rng, counters[src])
        else:
            doc = repeated_doc(rng, counters[src], sentences)
        emitted[src] += len(doc.text)
        done += len(doc.text)
        out.append(doc)
    return out


# --------------------------------------------------------------------------- tokenizer


def tokenizer_for(stream: list[Doc], work: Path, vocab: int):
    """A byte-fallback unigram SentencePiece model on the first third of the stream (cached by content).

    Small vocabulary (the trainer's output layer dominates its cost on CPU): characters outside
    98 % coverage (rare CJK) fall back to bytes.
    """
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


def tokenize(sp, docs: list[Doc]) -> None:
    from streams.stages.validate import content_hash

    for d, ids in zip(docs, sp.encode([d.text for d in docs])):
        d.tokens = np.asarray(ids, dtype=np.int64)
        d.hash = content_hash(d.text)


def calibrate(docs: list[Doc]) -> dict[str, float]:
    """bytes_per_token and cjk_chars_per_token for the budget stage's token estimate (least squares)."""
    cjk = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
    rows, ys = [], []
    for d in docs[:2000]:
        n_cjk = len(cjk.findall(d.text))
        rows.append([n_cjk, len(d.text.encode("utf-8")) - 3 * n_cjk])
        ys.append(len(d.tokens))
    coef, *_ = np.linalg.lstsq(np.array(rows, float), np.array(ys, float), rcond=None)
    a, b = max(coef[0], 1e-3), max(coef[1], 1e-3)
    return {"bytes_per_token": round(1.0 / b, 3), "cjk_chars_per_token": round(1.0 / a, 3)}
