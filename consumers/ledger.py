"""The rejection ledger: every Rejection, once, in Parquet parts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from consumers.partitioned_sink import PartitionedSink, SinkStopped, atomic_write, write_part_end
from schemas import Rejection, SchemaError, Topics
from schemas.shard_format import part_name

LEDGER_COLUMNS = ("id", "reason", "stage", "recipe_version", "source", "url", "detail", "duplicate_of",
                  "score", "content_hash", "raw_ref", "n_bytes", "budget_version", "partition", "offset")


class RejectionLedger(PartitionedSink):
    sink_name = "ledger"

    def __init__(self, bootstrap: str, out_dir: str | Path, *, namespace: str = "live", recipe_version: str,
                 max_rows: int = 50_000, timeout_s: float | None = 5.0):
        topics = Topics(namespace=namespace)
        super().__init__(bootstrap, topics.rejections, f"foundry-{namespace}-{recipe_version}-ledger",
                         max_size=max_rows, max_bytes=256 << 20, timeout_s=timeout_s)
        self.dir = Path(out_dir) / "ledger"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.recipe_version = recipe_version

    def decode(self, msg) -> Rejection:
        try:
            rej = Rejection.decode(msg.value())
        except SchemaError as err:
            # Even a broken rejection is recorded, under its coordinates.
            return Rejection(id=f"{msg.topic()}:{msg.partition()}:{msg.offset()}", reason=err.reason.value,
                             stage="ledger", recipe_version=self.recipe_version, detail=err.detail[:500])
        if rej.recipe_version != self.recipe_version:
            raise SinkStopped(f"{msg.topic()}[{msg.partition()}] offset {msg.offset()}: a rejection of recipe version "
                              f"{rej.recipe_version} in the ledger of version {self.recipe_version}; one namespace "
                              f"runs one recipe version (streams/namespace_guard.py)")
        return rej

    def key_of(self, rej: Rejection) -> str:
        # One raw message gives one outcome; raw_ref names the message, the id may repeat.
        return "\x1f".join((rej.id, rej.raw_ref or "", rej.stage))

    def measure(self, rej: Rejection, raw_len: int) -> int:
        return 1

    def recover_partition(self, partition: int) -> tuple[int | None, set[str], int]:
        def keys(part: Path) -> list[str]:
            t = pq.read_table(part, columns=["id", "raw_ref", "stage"]).to_pylist()
            return ["\x1f".join((r["id"], r["raw_ref"] or "", r["stage"])) for r in t]

        return self.recover_from(self.dir, partition, keys)

    def write_part(self, partition: int, first_seq: int, end_offset: int,
                   items: list[tuple[int, Rejection]]) -> None:
        rows: dict[str, list[Any]] = {c: [] for c in LEDGER_COLUMNS}
        for offset, rej in items:
            d = rej.to_dict()
            d.update(partition=partition, offset=offset)
            for c in LEDGER_COLUMNS:
                rows[c].append(d.get(c))
        schema = pa.schema([(c, pa.string()) for c in LEDGER_COLUMNS[:11]] +
                           [("n_bytes", pa.int64()), ("budget_version", pa.int64()),
                            ("partition", pa.int32()), ("offset", pa.int64())])
        schema = schema.set(schema.get_field_index("score"), pa.field("score", pa.float64()))
        table = pa.table(rows, schema=schema)
        part = self.dir / part_name(partition, first_seq)
        atomic_write(part, lambda tmp: pq.write_table(table, tmp))
        write_part_end(part, end_offset)
