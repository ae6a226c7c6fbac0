"""The raw ref: which raw message an outcome came from, carried from ingest to the sinks.

Version 2, written now: ``TOPIC@INCARNATION:PARTITION:OFFSET``, where INCARNATION
is the broker's topic id (the topic deleted and created again under the same
name gets another one, and its offsets restart at 0), or ``TOPIC:PARTITION:OFFSET``
where no id is known (a replay from the archive). Version 1, in older outputs
and snapshots: ``PARTITION:OFFSET``, which means the pipeline's raw topic.
Topic names never contain ``@`` or ``:``, so the fields split unambiguously.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RawRef:
    topic: str | None  # None: a version-1 ref
    incarnation: str | None
    partition: int
    offset: int

    @property
    def stream(self) -> str:
        """What the offsets count within: one partition of one incarnation of one topic."""
        if self.topic is None:
            return str(self.partition)
        inc = f"@{self.incarnation}" if self.incarnation else ""
        return f"{self.topic}{inc}:{self.partition}"


def format_raw_ref(topic: str, partition: int, offset: int, incarnation: str | None = None) -> str:
    inc = f"@{incarnation}" if incarnation else ""
    return f"{topic}{inc}:{partition}:{offset}"


def parse_raw_ref(ref: str | None) -> RawRef | None:
    """Either version; None for a missing or unreadable ref."""
    if not ref:
        return None
    head, _, off = ref.rpartition(":")
    topic, sep, part = head.rpartition(":")
    try:
        partition, offset = int(part), int(off)
    except ValueError:
        return None
    if not sep:
        return RawRef(None, None, partition, offset)
    name, _, inc = topic.partition("@")
    if not name:
        return None
    return RawRef(name, inc or None, partition, offset)
