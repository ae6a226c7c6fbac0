"""A source that arrives over time: any ResumableSource held to a rate.

An always-on factory is fed by sources that trickle (a crawler, a generator at
a rate, files dropped now and then), not by a corpus published all at once;
``Paced`` makes any source behave like that, so shards land while the trainer
trains and budgets change while documents still arrive.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from .runner import Item


class Paced:
    """``source`` with at most ``rate`` documents a second (non-documents are not paced)."""

    def __init__(self, source: Any, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive (documents per second)")
        self.source, self.rate = source, float(rate)
        self._clock, self._sleep = clock, sleep
        self.name = source.name

    def inputs(self) -> list[str]:
        return self.source.inputs()

    def size(self, key: str) -> int | None:
        return self.source.size(key)

    def read(self, key: str, position: Any = None) -> Iterator[Item]:
        due = self._clock()
        for item in self.source.read(key, position):
            if item.doc is not None:
                now = self._clock()
                if due > now:
                    self._sleep(due - now)
                due = max(due, now - 1.0) + 1.0 / self.rate  # no burst after a stall longer than a second
            yield item
