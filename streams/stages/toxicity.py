"""Toxicity (English and Chinese): a two-stage cascade run in ONNX.

Models and their measured quality are described in ``models/toxicity/CARD.md``;
``models/toxicity/build.py`` trains and exports them.

How a document is scored:

1. The text is normalised (NFKC, lower case, URLs -> ``u``, @mentions -> ``@``,
   HTML entities dropped, whitespace collapsed) and cut into windows of about
   ``WINDOW`` (256) characters, at spaces where possible (see ``split_windows``).
   A document with more than ``max_windows`` windows is scored on
   ``max_windows`` of them, evenly spaced over the text (always the same ones
   for the same text).
2. Stage 1, lexical: every character 1..5-gram of a window (the window padded
   by a space each side) is hashed into 2^20 buckets; a linear layer over the
   mean of the bucket weights gives the window's toxicity logit
   (``lexical.onnx``: Gather -> ScatterElements(add) -> Sigmoid).
3. Stage 2, encoder: windows whose lexical probability lies in the uncertain
   band ``[band_low, band_high]`` are also scored by a small character CNN
   (``encoder.onnx``); their probability becomes the mean of the two logits
   passed through a sigmoid. Outside the band the lexical probability stands.
4. The document's score is the maximum window probability: one clearly toxic
   passage is enough to flag a document.

Documents scoring above ``threshold`` are rejected with ``Reason.TOXIC``.
Scores depend only on the document text (not on the batch it arrives in).
"""
from __future__ import annotations

import json
import os
import re
import threading
import unicodedata
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from schemas import Reason
from streams.stages.base import ModelScoringStage
from streams.stages.onnx_session import cpu_session
from streams.stages.registry import register

# Package data of `models`, found where the project is installed (see streams/stages/density.py).
MODEL_DIR = Path(os.fspath(resources.files("models").joinpath("toxicity")))

WINDOW = 256  # characters per window (the labelled training texts are tweets / comments of this size)
NMAX = 5  # character n-grams of order 1..NMAX
BITS = 20  # 2^20 hash buckets
ENC_VOCAB = 8191  # the encoder hashes each code point to 1..ENC_VOCAB (0 = padding)

_URL = re.compile(r"https?://\S+|www\.\S+")
_MENTION = re.compile(r"@\w+")
_ENTITY = re.compile(r"&(?:amp|lt|gt|quot|apos|nbsp|#\d+|#x[0-9a-f]+);")

_M = np.uint64(0x100000001B3)  # rolling-hash multiplier
_C = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci-hashing constant
_SALT = [np.uint64((n * 0x632BE59BD9B4E019) % (1 << 64)) for n in range(NMAX + 1)]
_SEP = "\x00" * (NMAX - 1)


def normalize(text: str) -> str:
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    text = text.lower().replace("\x00", " ")
    # Each pattern needs its literal; most texts have none of them, and a scan for it is cheap.
    if "http" in text or "www." in text:
        text = _URL.sub(" u ", text)
    if "@" in text:
        text = _MENTION.sub(" @ ", text)
    if "&" in text:
        text = _ENTITY.sub(" ", text)
    return " ".join(text.split())  # = \s+ -> " " and strip: str.split() splits on what \s matches


def split_windows(t: str) -> list[str]:
    """Cut normalised text into windows of about WINDOW characters.

    A cut goes at the last space between WINDOW/2 and WINDOW characters into the
    window (a hard cut where there is none, e.g. Chinese); the tail joins the last
    window when it is short, so no window is a stray fragment of a few words and
    none is longer than 1.5 x WINDOW.
    """
    out: list[str] = []
    i, n = 0, len(t)
    while i < n:
        if n - i <= WINDOW + WINDOW // 2:
            out.append(t[i:])
            break
        j = t.rfind(" ", i + WINDOW // 2, i + WINDOW)
        if j < 0:
            out.append(t[i : i + WINDOW])
            i += WINDOW
        else:
            out.append(t[i:j])
            i = j + 1
    return out


def windows(text: str, max_windows: int) -> list[str]:
    """The normalised text cut into windows, at most ``max_windows`` of them, evenly spaced."""
    t = normalize(text)
    if not t:
        return [""]
    wins = split_windows(t)
    if len(wins) > max_windows:
        idx = np.unique(np.round(np.linspace(0, len(wins) - 1, max_windows)).astype(int))
        wins = [wins[i] for i in idx]
    return wins


def first_window(text: str) -> str:
    """The first WINDOW characters of the normalised text: the unit the models were trained on."""
    return normalize(text)[:WINDOW]


def hash_ngrams(wins: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashed character n-grams of each window.

    Returns ``ids`` [NMAX, L] (bucket of the n-gram of order n+1 starting at each
    position), ``seg`` [L] (the window each position belongs to) and ``inv_len``
    [len(wins)] (1 / number of n-grams of each window).

    Windows are joined with NMAX-1 NUL characters before each one, so every
    n-gram sees characters of one window only (plus NULs): a window's features
    do not depend on its neighbours in the batch.
    """
    blocks = [_SEP + " " + w + " " for w in wins]
    joined = "".join(blocks) + _SEP
    cp = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    L = len(cp) - (NMAX - 1)
    lens = np.fromiter((len(b) for b in blocks), dtype=np.int64, count=len(blocks))
    seg = np.repeat(np.arange(len(blocks), dtype=np.int64), lens)
    ids = np.empty((NMAX, L), dtype=np.uint64)
    h = np.zeros(L, dtype=np.uint64)
    shift = np.uint64(64 - BITS)
    for n in range(1, NMAX + 1):
        np.multiply(h, _M, out=h)
        np.add(h, cp[n - 1 : n - 1 + L], out=h)
        out = ids[n - 1]
        np.add(h, _SALT[n], out=out)
        np.multiply(out, _C, out=out)
        np.right_shift(out, shift, out=out)
    inv_len = (1.0 / (lens * NMAX)).astype(np.float32)
    return ids.view(np.int64), seg, inv_len


def encode_chars(wins: Sequence[str]) -> np.ndarray:
    """Encoder input: code points hashed to 1..ENC_VOCAB, padded with 0, a space each side."""
    rows = [np.frombuffer((" " + w + " ").encode("utf-32-le", "surrogatepass"), dtype=np.uint32) for w in wins]
    width = max(max(len(r) for r in rows), 5)
    x = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        x[i, : len(r)] = r.astype(np.int64) % ENC_VOCAB + 1
    return x


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class ToxicityScorer:
    """The cascade. ``score_texts`` returns one probability-like score per text."""

    def __init__(self, model_dir: str | os.PathLike | None = None, *, intra_op_num_threads: int = 1,
                 lexical_file: str | None = None, encoder_file: str | None = None,
                 band: tuple[float, float] | None = None, max_windows: int | None = None,
                 use_encoder: bool = True, encoder_batch: int = 128):
        self.dir = Path(model_dir) if model_dir else MODEL_DIR
        cfg = json.loads((self.dir / "toxicity.json").read_text())
        self.cfg = cfg
        self.threads = int(intra_op_num_threads)
        self.lexical_path = self.dir / (lexical_file or cfg["lexical_file"])
        self.encoder_path = self.dir / (encoder_file or cfg["encoder_file"])
        lo, hi = band if band is not None else cfg["band"]
        self.band = (float(lo), float(hi))
        self.max_windows = int(max_windows or cfg["max_windows"])
        self.default_threshold = float(cfg["threshold"])
        self.use_encoder = bool(use_encoder)
        self.encoder_batch = int(encoder_batch)
        self._lock = threading.Lock()
        self._mtimes: tuple[float, float] | None = None
        self.reload_if_changed()

    def reload_if_changed(self) -> bool:
        mt = (self.lexical_path.stat().st_mtime,
              self.encoder_path.stat().st_mtime if self.use_encoder else 0.0)
        if mt == self._mtimes:
            return False
        lex = cpu_session(self.lexical_path, self.threads)
        enc = cpu_session(self.encoder_path, self.threads) if self.use_encoder else None
        with self._lock:
            self._lex, self._enc, self._mtimes = lex, enc, mt
        return True

    # -- per window ----------------------------------------------------------
    def lexical_logits(self, wins: Sequence[str]) -> np.ndarray:
        ids, seg, inv_len = hash_ngrams(wins)
        (logit,) = self._lex.run(["logit"], {"ids": ids, "seg": seg, "inv_len": inv_len})
        return logit.astype(np.float64)

    def encoder_logits(self, wins: Sequence[str]) -> np.ndarray:
        out = np.zeros(len(wins), dtype=np.float64)
        # similar lengths share a batch; results go back in input order
        order = sorted(range(len(wins)), key=lambda i: (len(wins[i]), i))
        for s in range(0, len(order), self.encoder_batch):
            idx = order[s : s + self.encoder_batch]
            (logit,) = self._enc.run(["logit"], {"x": encode_chars([wins[i] for i in idx])})
            out[idx] = logit
        return out

    def window_probs(self, wins: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(cascade probability, lexical probability) per window."""
        z = self.lexical_logits(wins)
        p_lex = _sigmoid(z)
        p = p_lex.copy()
        if self.use_encoder:
            lo, hi = self.band
            unsure = np.flatnonzero((p_lex >= lo) & (p_lex <= hi))
            if len(unsure):
                ze = self.encoder_logits([wins[i] for i in unsure])
                p[unsure] = _sigmoid((z[unsure] + ze) / 2.0)
        return p, p_lex

    # -- per document --------------------------------------------------------
    def score_texts(self, texts: Sequence[str]) -> list[float]:
        wins: list[str] = []
        owner: list[int] = []
        for i, t in enumerate(texts):
            w = windows(t, self.max_windows)
            wins.extend(w)
            owner.extend([i] * len(w))
        if not wins:
            return []
        p, _ = self.window_probs(wins)
        out = np.zeros(len(texts))
        np.maximum.at(out, np.asarray(owner), p)
        return [round(float(v), 6) for v in out]


class ToxicityStage(ModelScoringStage):
    name = "toxicity"
    reason = Reason.TOXIC
    reject_above = True

    def __init__(self, threshold: float | None = None, *, model_dir: str | None = None,
                 intra_op_num_threads: int = 1, batch_size: int = 256, band: Sequence[float] | None = None,
                 max_windows: int | None = None, use_encoder: bool = True, auto_reload: bool = False):
        super().__init__(ToxicityScorer(model_dir, intra_op_num_threads=intra_op_num_threads,
                                        band=tuple(band) if band is not None else None,
                                        max_windows=max_windows, use_encoder=use_encoder),
                         threshold, batch_size, auto_reload)


@register("toxicity")
def toxicity_stage(**params: Any) -> ToxicityStage:
    """Recipe entry ``{op: toxicity, threshold: 0.9, intra_op_num_threads: 2, use_encoder: true}``."""
    return ToxicityStage(**params)
