"""SentencePiece tokenization, in batches. Versioned by the model file's hash."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm

from schemas import CuratedDocument
from schemas.recipe import tokenizer_version  # noqa: F401  (the stage's version; imported from here too)
from streams.stages.base import Outcome, Stage


class SentencePieceTokenizer(Stage):
    """Adds token ids to each document; never rejects (byte fallback covers any text)."""

    name = "tokenize"

    def __init__(self, model_path: str | Path, num_threads: int = 1):
        self.model_path = Path(model_path)
        self.sp = spm.SentencePieceProcessor(model_file=str(self.model_path))
        self.version = tokenizer_version(self.model_path)
        self.vocab_size = self.sp.get_piece_size()
        self.num_threads = num_threads

    def process_batch(self, docs: Sequence[CuratedDocument]) -> list[Outcome]:
        if not docs:
            return []
        ids = self.sp.encode([d.text for d in docs], num_threads=self.num_threads)
        for doc, toks in zip(docs, ids):
            doc.set_tokens(toks, self.version)
        return list(docs)
