"""Rows built ahead on a background thread, and rows turned into training batches.

The prefetcher runs :class:`~trainer.shard_stream.RowStream` on its own thread so
that reading and packing overlap the training step; the loop takes rows from a
bounded queue and measures how long it had to wait for them.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from trainer.shard_stream import DocInfo, Row, RowStream, StreamPosition, StreamStopped

_END = object()


@dataclass
class DocSlot:
    occurrence: tuple[int, int]
    doc: DocInfo
    last: bool  # the document ends in this batch
    new: bool


@dataclass
class Batch:
    tokens: torch.Tensor  # (B, T + 1) int64
    target_doc: torch.Tensor  # (B, T) int64: slot in ``docs`` of each target token, -1 for none
    docs: list[DocSlot]
    position: StreamPosition  # the stream position after the batch's last row

    @property
    def rows(self) -> int:
        return int(self.tokens.shape[0])

    def inputs(self) -> torch.Tensor:
        return self.tokens[:, :-1]

    def targets(self) -> torch.Tensor:
        return self.tokens[:, 1:]


def collate(rows: list[Row]) -> Batch:
    """Stack rows; charge each target token to the document whose previous token is in the same row.

    The first token of a span has no in-row context from its own document, and
    the boundary token belongs to no document, so neither is charged.
    """
    tokens = torch.from_numpy(np.stack([r.tokens for r in rows]))
    target_doc = torch.full((len(rows), tokens.shape[1] - 1), -1, dtype=torch.int64)
    slots: dict[tuple[int, int], int] = {}
    docs: list[DocSlot] = []
    for b, row in enumerate(rows):
        for span in row.spans:
            slot = slots.get(span.occurrence)
            if slot is None:
                slot = slots[span.occurrence] = len(docs)
                docs.append(DocSlot(span.occurrence, span.doc, span.last, span.new))
            elif span.last:
                docs[slot].last = True
            if span.length > 1:
                target_doc[b, span.start:span.start + span.length - 1] = slot
    return Batch(tokens=tokens, target_doc=target_doc, docs=docs, position=rows[-1].position)


class RowPrefetcher:
    """Runs the row stream on a thread; ``take`` hands out rows in stream order."""

    def __init__(self, stream: RowStream, max_rows: int = 512):
        self.stream = stream
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, max_rows))
        self._stop = threading.Event()
        self._leftover: list[Row] = []
        self._ended = False
        self.wait_s = 0.0  # time ``take`` spent blocked on an empty queue
        self._thread = threading.Thread(target=self._run, name="row-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                row = self.stream.next_row()
                while not self._stop.is_set():
                    try:
                        self._queue.put(row, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except StreamStopped:
            pass
        except BaseException as exc:  # hand the error to the training thread
            self._put_final(exc)
            return
        self._put_final(_END)

    def _put_final(self, item: object) -> None:
        while True:
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    return

    def take(self, n: int, poll: Callable[[], bool] | None = None, poll_s: float = 0.05) -> list[Row] | None:
        """``n`` rows, or None when the stream ended or ``poll`` (called while waiting) says stop.

        Rows taken before a stop are kept for the next call, so none is lost.
        """
        rows = self._leftover
        self._leftover = []
        while len(rows) < n:
            if self._ended:
                self._leftover = rows
                return None
            t0 = time.perf_counter()
            try:
                item = self._queue.get(timeout=poll_s)
            except queue.Empty:
                self.wait_s += time.perf_counter() - t0
                if poll is not None and poll():
                    self._leftover = rows
                    return None
                continue
            self.wait_s += time.perf_counter() - t0
            if item is _END:
                self._ended = True
                continue
            if isinstance(item, BaseException):
                self._ended = True
                raise item
            rows.append(item)
        return rows

    def close(self) -> None:
        self._stop.set()
        self.stream.stop()
        self._thread.join(timeout=5)
