"""Reads a topic's head for one-off jobs such as training a tokenizer on the
first megabytes of the stream."""
from __future__ import annotations

from collections.abc import Iterator

from iolayer.ranges import range_consumer, read_range, watermarks
from schemas import RawDocument, SchemaError


def read_raw_texts(bootstrap: str, topic: str, max_bytes: int) -> Iterator[str]:
    """Texts from the start of each partition, partition by partition, until
    ``max_bytes`` (spread evenly over the partitions) are read. Deterministic
    for a given topic content."""
    marks = watermarks(bootstrap, topic)
    per_part = max_bytes // max(len(marks), 1) + 1
    c = range_consumer(bootstrap)
    try:
        for p, (low, high) in marks.items():
            used = 0
            for m in read_range(c, topic, p, low, high):
                try:
                    doc = RawDocument.decode(m.value())
                except SchemaError:
                    doc = None
                if doc is not None and doc.defect is None and doc.text:
                    used += len(doc.text.encode("utf-8"))
                    yield doc.text
                if used >= per_part:
                    break
    finally:
        c.close()
