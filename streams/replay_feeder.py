"""The first stage of a replay: raw range -> validate -> the replay's sequenced topic.

Single-threaded and in canonical order (partition, then offset), so the sequenced
topic of a replay has the same content whatever the number of workers
downstream. Resumable: a checkpoint file records, after each flush, the next
raw offset per partition. Messages sent after the last checkpoint are sent
again on resume; the dedup agent recognises them by their raw offset (see
``PartitionState.admit``) and the sinks skip them, so they change nothing.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from iolayer.atomic_files import atomic_write_text
from schemas import RawDocument, Rejection, SchemaError, Topics
from schemas.raw_ref import format_raw_ref
from iolayer.publisher import RecordPublisher
from streams.raw_range import RawMessage
from streams.stages.validate import Validator


class ReplayFeeder:
    def __init__(self, bootstrap: str, topics: Topics, validator: Validator, checkpoint: str | Path,
                 raw_topic_name: str = "foundry.raw", checkpoint_every: int = 2000):
        self.topics = topics
        self.validator = validator
        self.checkpoint = Path(checkpoint)
        self.raw_topic_name = raw_topic_name
        self.every = checkpoint_every
        self.keyed = RecordPublisher(bootstrap, topics.sequenced, client_id="foundry-replay-feeder")
        self.rejections = RecordPublisher(bootstrap, topics.rejections, check=False,
                                          client_id="foundry-replay-feeder-rej")
        self.fed = 0

    def position(self) -> dict[int, int]:
        if self.checkpoint.exists():
            return {int(k): v for k, v in json.loads(self.checkpoint.read_text()).items()}
        return {}

    def _save(self, pos: dict[int, int]) -> None:
        self.keyed.flush()
        self.rejections.flush()
        atomic_write_text(self.checkpoint, json.dumps(pos))

    def feed(self, messages: Iterable[RawMessage], progress=None) -> int:
        """Feed messages not yet fed (per the checkpoint); returns how many were fed now."""
        pos = self.position()
        n = 0
        for m in messages:
            if m.offset < pos.get(m.partition, 0):
                continue
            ref = format_raw_ref(self.raw_topic_name, m.partition, m.offset)
            try:
                raw = RawDocument.decode(m.value)
                raw.meta["raw_ref"] = ref
                out = self.validator(raw)
            except SchemaError as err:
                out = Rejection(id=ref, reason=err.reason.value, stage="ingest",
                                recipe_version=self.validator.recipe_version, detail=err.detail[:500], raw_ref=ref)
            if isinstance(out, Rejection):
                self.rejections.publish(out, key=out.id)
            else:
                self.keyed.publish(out, key=out.content_hash,
                                   headers={"doc_id": out.id.encode(), "raw_ref": ref.encode()})
            pos[m.partition] = m.offset + 1
            n += 1
            if progress:
                progress(1)
            if n % self.every == 0:
                self._save(pos)
        self._save(pos)
        self.fed += n
        return n
