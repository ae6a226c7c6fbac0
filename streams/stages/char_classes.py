"""Counting characters of a class (``[^\\W\\d_]``, ``\\d``, the CJK ranges ...) with
lookup tables instead of regular expressions.

``len(rx.findall(text))`` walks the text in Python's regex engine, about 100 ns a
character. A table of the 65,536 code points of the Basic Multilingual Plane,
built once from the same one-character expression, answers for a whole batch
of texts in a few numpy steps, so the counts come out identical and several
times faster. The few characters beyond the BMP (emoji, CJK extension B) are
counted with the expressions themselves.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

_BMP = "".join(map(chr, range(0x10000)))

# The one CJK class of the project: Han (incl. extensions and compatibility ideographs),
# kana, hangul syllables.
CJK_CLASS = (
    "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
    "\U00020000-\U0002ebef\U00030000-\U0003134f"
)
CJK_CHAR = re.compile(f"[{CJK_CLASS}]")


@lru_cache(maxsize=None)
def class_table(char_class: str) -> np.ndarray:
    """bool[65536]: which BMP code points the one-character ``char_class`` matches."""
    matches = list(re.finditer(char_class, _BMP))
    if any(m.end() - m.start() != 1 for m in matches):
        raise ValueError(f"{char_class!r} is not a one-character class")
    table = np.zeros(0x10000, dtype=bool)
    table[[m.start() for m in matches]] = True
    return table


class ClassCounter:
    """Counts of up to eight one-character regex classes in each of a batch of texts."""

    def __init__(self, patterns: Sequence[re.Pattern]):
        if len(patterns) > 8:
            raise ValueError("at most 8 classes (one bit each)")
        self.patterns = list(patterns)
        self._flags: np.ndarray | None = None  # built on first use: ~10 ms a class

    def flags(self) -> np.ndarray:
        if self._flags is None:
            flags = np.zeros(0x10000, dtype=np.uint8)
            for bit, rx in enumerate(self.patterns):
                flags |= class_table(rx.pattern).astype(np.uint8) << bit
            self._flags = flags
        return self._flags

    def counts(self, texts: Sequence[str]) -> np.ndarray:
        """int64[len(texts), len(patterns)]: ``len(pattern.findall(text))`` for each pair."""
        out = np.zeros((len(texts), len(self.patterns)), dtype=np.int64)
        codes = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype="<u4")
        if not len(codes):
            return out
        seg = np.repeat(np.arange(len(texts)), [len(t) for t in texts])
        astral = codes > 0xFFFF
        flags = self.flags()[np.where(astral, 0, codes)]
        flags[astral] = 0  # counted below
        for bit in range(len(self.patterns)):
            out[:, bit] = np.bincount(seg, weights=(flags >> bit) & 1, minlength=len(texts))
        if astral.any():
            for i in np.unique(seg[astral]):
                rest = "".join(c for c in texts[i] if ord(c) > 0xFFFF)
                out[i] += [len(rx.findall(rest)) for rx in self.patterns]
        return out
