"""Size of the dedup agent's snapshot at a million documents, and its chunks.

    python bench/near_dup_state.py [--docs 1000000] [--max-entries 500000]

Builds the state the dedup agent snapshots after ``--docs`` distinct documents
under the default recipe (bloom filter chain over their hashes, near-duplicate
index of the newest ``max_entries`` signatures: 128 permutations, synthetic
random values), writes it as ``PartitionState.snapshot()`` does, cuts it as
``PartitionStateStore`` sends it and prints the snapshot's size, the number of
chunk messages and the largest message against the 64 MiB message limit.
``--max-entries 0`` leaves the index unbounded (about 2 GB of memory at 1M).

The band tables are not part of a snapshot (they are rebuilt from the
signatures on restore), so the index's signatures, ids and counter are filled
in directly rather than through ``process_batch``: that keeps memory to the
snapshot's own size and the run to seconds.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.partition_state import CHUNK_BYTES, PartitionState, snapshot_messages  # noqa: E402
from streams.stages.dedup import BloomDeduper  # noqa: E402
from streams.stages.near_dedup import NearDedup  # noqa: E402

MESSAGE_LIMIT = 64 << 20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--max-entries", type=int, default=500_000, help="near_dedup's default; 0 = unbounded")
    args = ap.parse_args()
    cap = args.max_entries or None
    rng = np.random.default_rng(0)

    bloom = BloomDeduper(1_000_000, 0.001)  # the default recipe's dedup section
    t = time.perf_counter()
    for i in range(args.docs):
        bloom.add(f"{i:032x}", f"doc-{i}")
    near = NearDedup(threshold=0.5, num_perm=128, max_entries=cap)
    held = args.docs if cap is None else min(cap, args.docs)
    first = args.docs - held  # FIFO: the oldest went first
    sigs = rng.integers(0, np.iinfo(np.uint64).max, size=(held, near.num_perm), dtype=np.uint64, endpoint=True)
    near._sigs = OrderedDict((f"web-{first + i:09d}", sigs[i]) for i in range(held))
    near._order = {k: first + i for i, k in enumerate(near._sigs)}
    near._next = args.docs
    state = PartitionState([bloom, near], next_offset=args.docs)
    state.raw_high = {f"foundry.raw@0:{p}": args.docs // 4 for p in range(4)}
    build_s = time.perf_counter() - t

    t = time.perf_counter()
    blob = state.snapshot()
    msgs = snapshot_messages("v:p0:s0", blob)
    cut_s = time.perf_counter() - t
    sizes = [len(k) + len(v) for k, v in msgs]
    parts = {s.name: len(s.snapshot()) for s in state.stages}
    print(f"documents: {args.docs:,}; near-dup index entries: {held:,} (max_entries {cap or 'unbounded'})")
    print(f"snapshot: {len(blob) / 2**20:,.1f} MiB  (bloom {parts[bloom.name] / 2**20:,.1f} MiB, "
          f"near_dedup {parts[near.name] / 2**20:,.1f} MiB = {parts[near.name] / max(held, 1):,.0f} B per entry)")
    print(f"messages: {len(msgs) - 1} chunks of at most {CHUNK_BYTES >> 20} MiB + 1 manifest; largest "
          f"{max(sizes) / 2**20:.2f} MiB against the {MESSAGE_LIMIT >> 20} MiB limit: "
          f"{'under' if max(sizes) < MESSAGE_LIMIT else 'OVER'}")
    print(f"as one message (before chunking) it would be {len(blob) / MESSAGE_LIMIT:.1f}x the limit")
    print(f"written per snapshot_every=20,000 documents: {len(blob) / 20_000 / 1024:,.1f} KiB per document")
    print(f"(state built in {build_s:.1f}s, snapshot written and cut in {cut_s:.1f}s)")


if __name__ == "__main__":
    main()
