"""Train a byte-fallback SentencePiece model from a sample of text.

Used when a recipe names no tokenizer model: the first configured megabytes
of the stream become the training sample. Training is single-threaded with a
fixed seed and input order, so the same sample gives the same model.
"""
from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from streams.stages.tokenize import tokenizer_version


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, *, vocab_size: int = 8000,
                    model_type: str = "unigram", max_mb: float = 4.0) -> Path:
    """Train on up to ``max_mb`` of text; returns ``out_dir/<version>.model``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    budget = int(max_mb * 1024 * 1024)
    buf = io.StringIO()
    used = 0
    for text in texts:
        line = " ".join(text.split())  # one sentence per line for the trainer
        if not line:
            continue
        buf.write(line[:20000] + "\n")
        used += len(line.encode("utf-8"))
        if used >= budget:
            break
    if used == 0:
        raise ValueError("no text to train a tokenizer on")
    # Feed sentences from memory and take the model from memory: with file
    # paths, the (temporary) paths would be written into the model and two
    # trainings on the same sample would differ.
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(buf.getvalue().splitlines()), model_writer=model,
        vocab_size=vocab_size, model_type=model_type, byte_fallback=True, character_coverage=0.9995,
        num_threads=1, shuffle_input_sentence=False, hard_vocab_limit=False, minloglevel=2,
        input_sentence_size=0, max_sentence_length=20000,
    )
    tmp_path = out_dir / "training.model.tmp"
    tmp_path.write_bytes(model.getvalue())
    final = out_dir / f"{tokenizer_version(tmp_path)}.model"
    tmp_path.replace(final)
    return final
