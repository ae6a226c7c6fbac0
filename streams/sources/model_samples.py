"""Documents sampled from the continuous trainer's model, as a source of their own.

The trainer exports its model to ONNX every few steps (``trainer/export.py``) and
points ``latest.json`` in its export folder at the newest checked file; that
export is the checkpoint this source samples from, with onnxruntime (no torch
needed) and the SentencePiece model of the shards' tokenizer. Sampling is
top-k with a seeded generator per document, so the same export, tokenizer and
seed give the same documents, and a resumed run regenerates from its index.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from schemas import RawDocument
from streams.sources.runner import Item


class ModelSampleSource:
    def __init__(self, export_dir: str | Path, tokenizer_model: str | Path, *, n_docs: int = 100, seed: int = 0,
                 max_tokens: int = 128, temperature: float = 1.0, top_k: int = 50, source: str = "synthetic-model"):
        import onnxruntime as ort
        import sentencepiece as spm

        from streams.stages.tokenize import tokenizer_version

        pointer = Path(export_dir) / "latest.json"
        if not pointer.exists():
            raise FileNotFoundError(f"no trainer export in {export_dir} (expected latest.json from `foundry train`)")
        self.meta = json.loads(pointer.read_text())
        self.sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
        want = self.meta.get("tokenizer_version")
        have = tokenizer_version(tokenizer_model)
        if want and want != have:
            raise ValueError(f"the export was trained on tokenizer {want}, but {tokenizer_model} is {have}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(self.meta["path"], opts, providers=["CPUExecutionProvider"])
        self.block = int(self.meta["block_size"])
        self.boundary = int(self.meta["boundary_token"])
        self.n_docs, self.seed, self.max_tokens = n_docs, seed, max_tokens
        self.temperature, self.top_k, self.source = temperature, top_k, source

    def sample_ids(self, rng: np.random.Generator) -> list[int]:
        ctx = [self.boundary]  # a document starts after a boundary token, as in training
        out: list[int] = []
        for _ in range(self.max_tokens):
            logits = self.session.run(None, {"tokens": np.array([ctx[-self.block:]], dtype=np.int64)})[0][0, -1]
            logits = logits.astype(np.float64) / max(self.temperature, 1e-6)
            top = np.argpartition(logits, -self.top_k)[-self.top_k:]
            p = np.exp(logits[top] - logits[top].max())
            tok = int(rng.choice(top, p=p / p.sum()))
            if tok == self.boundary:
                break
            out.append(tok)
            ctx.append(tok)
        return out

    # -- ResumableSource
    @property
    def name(self) -> str:
        return self.source

    def inputs(self) -> list[str]:
        spec = json.dumps([self.meta.get("model_version"), self.seed, self.n_docs, self.max_tokens,
                           self.temperature, self.top_k])
        return [f"model:{self.source}:{hashlib.sha1(spec.encode()).hexdigest()[:12]}"]

    def size(self, key: str) -> int | None:
        return None

    def read(self, key: str, position: Any = None) -> Iterator[Item]:
        for i in range(int((position or {}).get("index", 0)), self.n_docs):
            doc = self.document(i)
            yield Item(doc, {"index": i + 1}, n_bytes=len(doc.text.encode("utf-8")))

    def document(self, i: int) -> RawDocument:
        rng = np.random.default_rng([self.seed, i])
        text = self.sp.decode(self.sample_ids(rng))
        return RawDocument(id=f"{self.source}:{self.seed}:{i}", text=text, source=self.source, meta={
            "synthetic": True, "kind": "model_sample", "model_version": self.meta.get("model_version")})

    def __iter__(self) -> Iterator[RawDocument]:
        for i in range(self.n_docs):
            yield self.document(i)
