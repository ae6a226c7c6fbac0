"""Resumable ingestion: a checkpoint file per input, and recovery of what was
published after the last checkpoint.

The protocol, per input (a file, or a generator run):

1. Before publishing anything, and after every successful ``flush``, write a
   checkpoint: the input's position (everything up to it is delivered) and
   the raw topic's high watermarks at that moment.
2. Every message carries a header ``foundry-input`` naming its input.
3. A restarted ingest reads the checkpoint and resumes at its position. What
   it published between the checkpoint and the crash lies at or above the
   recorded watermarks: it reads the raw topic from there to the current end,
   collects the ids that carry this input's header, and skips those documents
   when it meets them again. Together with deterministic ids this gives "a
   restarted ingest does not publish a record twice", not only "at least once".

Checkpoints are written atomically (temp file + rename), so a kill never
leaves a torn one.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from iolayer.atomic_files import atomic_write_text
from iolayer.ranges import range_consumer, read_range

INPUT_HEADER = "foundry-input"


def default_state_dir() -> Path:
    return Path(os.environ.get("FOUNDRY_STATE", "var")) / "sources"


@dataclass
class Checkpoint:
    input: str  # the input's key (absolute path, or a generator's spec)
    position: Any = None  # source-specific, JSON; None = start
    done: bool = False
    watermarks: dict[str, int] = field(default_factory=dict)  # partition -> high watermark after the flush
    published: int = 0
    recovered: list[str] = field(default_factory=list)  # ids known delivered beyond ``position``
    updated_at: float = 0.0
    size: int | None = None  # the file's size when it was started (a shrunk file starts over)


class CheckpointStore:
    def __init__(self, state_dir: Path | str | None = None):
        self.dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.dir / f"{hashlib.sha1(key.encode('utf-8')).hexdigest()[:20]}.json"

    def load(self, key: str) -> Checkpoint | None:
        path = self._path(key)
        try:
            obj = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # unreadable checkpoint: start over (ids are deterministic, recovery dedups)
        if obj.get("input") != key:
            return None
        return Checkpoint(**{k: v for k, v in obj.items() if k in Checkpoint.__dataclass_fields__})

    def save(self, cp: Checkpoint) -> None:
        cp.updated_at = time.time()
        path = self._path(cp.input)
        atomic_write_text(path, json.dumps(asdict(cp)))

    def clear(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class TopicWatch:
    """High watermarks of a topic and recovery scans over it."""

    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self._consumer = range_consumer(bootstrap, f"foundry-source-recovery-{os.getpid()}",
                                        **{"auto.offset.reset": "earliest", "client.id": "foundry-source-recovery"})
        deadline = time.monotonic() + 15
        while True:  # a topic created a moment ago may not be in the metadata yet
            meta = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is not None and meta.error is None and meta.partitions:
                break
            if time.monotonic() > deadline:
                raise KafkaException(meta.error if meta is not None else f"no topic {topic}")
            time.sleep(0.2)
        self.partitions = sorted(meta.partitions)

    def watermarks(self) -> dict[str, int]:
        out = {}
        for p in self.partitions:
            _lo, hi = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10, cached=False)
            out[str(p)] = hi
        return out

    def wait_ready(self, timeout: float) -> None:
        """Wait until every partition has a leader again (after a broker restart)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.watermarks()
                return
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def published_since(self, watermarks: dict[str, int], input_key: str, timeout: float = 60.0) -> set[str]:
        """Keys of the messages with header ``foundry-input == input_key`` at or after ``watermarks``."""
        end = self.watermarks()
        todo = {int(p): off for p, off in watermarks.items() if end.get(p, 0) > off}
        # A partition that appeared after the checkpoint is read from its start.
        for p in self.partitions:
            if str(p) not in watermarks and end.get(str(p), 0) > 0:
                todo[p] = 0
        if not todo:
            return set()
        want = input_key.encode("utf-8")
        found: set[str] = set()
        for p, off in sorted(todo.items()):
            for msg in read_range(self._consumer, self.topic, p, off, end[str(p)], stall_s=timeout):
                for name, value in msg.headers() or ():
                    if name == INPUT_HEADER and value == want and msg.key() is not None:
                        found.add(msg.key().decode("utf-8", "replace"))
        return found

    def close(self) -> None:
        self._consumer.close()

