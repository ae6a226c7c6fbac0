"""Exact dedup: a scalable bloom filter over content hashes, per partition.

The filter's state before the message at offset ``o`` is, by definition, the
set of hashes at offsets ``< o`` of the same partition. Because of that a
filter can always be rebuilt from a snapshot plus the log (see
``streams/partition_state.py``), and a document reprocessed after a crash gets
the same verdict as the first time: never "duplicate of itself".

Scalable, not rotating (a rotation forgets, and a forgotten hash lets its
duplicate through): a chain of filters, each opened when the one before holds
its capacity. Filter ``i`` holds ``capacity * 2**i`` hashes at a false-positive
rate of ``fp_rate * (1 - r) * r**i`` with ``r = 1/2``; a hash is a duplicate if
any filter has it, so the compound rate is at most the sum of the rates,
``fp_rate * (1 - r) * (1 + r + r**2 + ...) < fp_rate``, however long the stream.
Memory grows with the hashes held (``memory_bytes``): each filter is allocated
whole when it opens, about 2 bytes per hash of its capacity at ``fp_rate=0.001``
(2 MB for the first million), so at most about twice that per hash held. When a
filter is full depends only on how many new hashes came before, so replay and
rebuilds open the same filters at the same documents.
"""
from __future__ import annotations

import json
import math
import struct
from collections import OrderedDict
from collections.abc import Sequence

from rbloom import Bloom

from schemas import CuratedDocument, Reason
from streams.stages.base import Outcome, Stage

_HALF = 1 << 127
_MAGIC = b"SBF1"
GROWTH = 2  # each filter holds twice the hashes of the one before
TIGHTENING = 0.5  # and has half its false-positive rate


def _signed(hash_hex: str) -> int:
    # rbloom wants a hash in the signed 128-bit range; our xxh3-128 is that hash.
    return int(hash_hex, 16) - _HALF


def _identity(x: int) -> int:
    return x


class BloomDeduper(Stage):
    """Rejects a document whose content hash the filter has seen.

    ``duplicate_of`` names the first document with that hash while it is in a
    bounded memory of recent hashes (the bloom filters themselves keep no ids).
    """

    name = "dedup"

    def __init__(self, capacity: int = 1_000_000, fp_rate: float = 0.001, remember_ids: int = 200_000):
        if capacity < 1 or not 0 < fp_rate < 1:
            raise ValueError(f"dedup needs capacity >= 1 and 0 < fp_rate < 1 (got {capacity}, {fp_rate})")
        self.capacity = capacity
        self.fp_rate = fp_rate
        self.filters: list[Bloom] = []
        self.counts: list[int] = []  # hashes added to each filter
        self._open_filter()
        self.remember_ids = remember_ids
        self._first_ids: OrderedDict[str, str] = OrderedDict()
        self.seen = 0

    # --- the chain ----------------------------------------------------
    def layer_capacity(self, i: int) -> int:
        return self.capacity * GROWTH ** i

    def layer_fp_rate(self, i: int) -> float:
        return self.fp_rate * (1 - TIGHTENING) * TIGHTENING ** i

    def _open_filter(self) -> None:
        i = len(self.filters)
        self.filters.append(Bloom(self.layer_capacity(i), self.layer_fp_rate(i), _identity))
        self.counts.append(0)

    def _has(self, h: int) -> bool:
        return any(h in f for f in self.filters)

    def add(self, content_hash: str, doc_id: str | None = None) -> bool:
        """Add a hash; True when it was (probably) already present."""
        h = _signed(content_hash)
        dup = self._has(h)
        if not dup:
            if self.counts[-1] >= self.layer_capacity(len(self.filters) - 1):
                self._open_filter()
            self.filters[-1].add(h)
            self.counts[-1] += 1
            if doc_id is not None and self.remember_ids:
                self._first_ids[content_hash] = doc_id
                if len(self._first_ids) > self.remember_ids:
                    self._first_ids.popitem(last=False)
        self.seen += 1
        return dup

    def __contains__(self, content_hash: str) -> bool:
        return self._has(_signed(content_hash))

    # --- what it reports ----------------------------------------------
    @property
    def items(self) -> int:
        return sum(self.counts)

    @property
    def fill(self) -> float:
        """How full the newest filter is (a new one opens at 1.0)."""
        return self.counts[-1] / self.layer_capacity(len(self.filters) - 1)

    def fp_rate_estimate(self) -> float:
        """The compound false-positive rate now, from each filter's size and count
        (optimal number of hashes assumed, as rbloom chooses it)."""
        miss = 1.0
        for i, (f, n) in enumerate(zip(self.filters, self.counts)):
            m = f.size_in_bits
            k = max(1, round(m / self.layer_capacity(i) * math.log(2)))
            miss *= 1.0 - (1.0 - math.exp(-k * n / m)) ** k
        return 1.0 - miss

    @property
    def memory_bytes(self) -> int:
        return sum(f.size_in_bits for f in self.filters) // 8

    def stats(self) -> dict:
        return {"items": self.items, "filters": len(self.filters), "fill": round(self.fill, 4),
                "fp_rate_estimate": self.fp_rate_estimate(), "fp_rate_bound": self.fp_rate,
                "memory_bytes": self.memory_bytes}

    # --- the stage ------------------------------------------------------
    def process_batch(self, docs: Sequence[CuratedDocument]) -> list[Outcome]:
        out: list[Outcome] = []
        for doc in docs:
            if self.add(doc.content_hash, doc.id):
                first = self._first_ids.get(doc.content_hash)
                out.append(self.reject(doc, Reason.DUPLICATE,
                                       f"content hash {doc.content_hash} seen before", duplicate_of=first))
            else:
                out.append(doc)
        return out

    def snapshot(self) -> bytes:
        blobs = [f.save_bytes() for f in self.filters]
        head = json.dumps({"capacity": self.capacity, "fp_rate": self.fp_rate, "counts": self.counts,
                           "sizes": [len(b) for b in blobs]}).encode()
        return _MAGIC + struct.pack(">I", len(head)) + head + b"".join(blobs)

    def restore(self, data: bytes) -> None:
        """A chain snapshot keeps its own capacity and rates (a filter cannot be resized).
        A snapshot of the single fixed-size filter of earlier builds is refused (ValueError):
        chained after it the bound would not hold, and the caller rebuilds the state from
        the log instead (``PartitionStateStore.rebuild``), which gives the same verdicts."""
        if not data.startswith(_MAGIC):
            raise ValueError("a fixed-size bloom filter snapshot of an earlier build")
        self._first_ids.clear()
        (n,) = struct.unpack(">I", data[4:8])
        head = json.loads(data[8:8 + n])
        self.capacity, self.fp_rate = int(head["capacity"]), float(head["fp_rate"])
        pos, self.filters = 8 + n, []
        for size in head["sizes"]:
            self.filters.append(Bloom.load_bytes(data[pos:pos + size], _identity))
            pos += size
        self.counts = [int(c) for c in head["counts"]]
