"""Exact dedup: one bloom filter over content hashes, per partition.

The filter's state before the message at offset ``o`` is, by definition, the
set of hashes at offsets ``< o`` of the same partition. Because of that a
filter can always be rebuilt from a snapshot plus the log (see
``streams/dedup_state.py``), and a document reprocessed after a crash gets
the same verdict as the first time: never "duplicate of itself".
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from rbloom import Bloom

from schemas import CuratedDocument, Reason
from streams.stages.base import Outcome, Stage

_HALF = 1 << 127


def _signed(hash_hex: str) -> int:
    # rbloom wants a hash in the signed 128-bit range; our xxh3-128 is that hash.
    return int(hash_hex, 16) - _HALF


def _identity(x: int) -> int:
    return x


class BloomDeduper(Stage):
    """Rejects a document whose content hash the filter has seen.

    ``duplicate_of`` names the first document with that hash while it is in a
    bounded memory of recent hashes (the bloom filter itself keeps no ids).
    """

    name = "dedup"

    def __init__(self, capacity: int = 1_000_000, fp_rate: float = 0.001, remember_ids: int = 200_000):
        self.capacity = capacity
        self.fp_rate = fp_rate
        self.bloom = Bloom(capacity, fp_rate, _identity)
        self.remember_ids = remember_ids
        self._first_ids: OrderedDict[str, str] = OrderedDict()
        self.seen = 0

    def add(self, content_hash: str, doc_id: str | None = None) -> bool:
        """Add a hash; True when it was (probably) already present."""
        h = _signed(content_hash)
        dup = h in self.bloom
        if not dup:
            self.bloom.add(h)
            if doc_id is not None and self.remember_ids:
                self._first_ids[content_hash] = doc_id
                if len(self._first_ids) > self.remember_ids:
                    self._first_ids.popitem(last=False)
        self.seen += 1
        return dup

    def __contains__(self, content_hash: str) -> bool:
        return _signed(content_hash) in self.bloom

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
        return self.bloom.save_bytes()

    def restore(self, data: bytes) -> None:
        self.bloom = Bloom.load_bytes(data, _identity)
        self._first_ids.clear()
