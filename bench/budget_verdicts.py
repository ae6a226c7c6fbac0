"""What judging each document by its ingest time costs budget_prune, beside the old way.

    python bench/budget_verdicts.py [--docs 20000] [--versions 2000] [--bootstrap HOST:PORT]

One run, the same documents, alternating rounds:

* ``current``: the old way - one ``current()`` per batch, every document under it (documents
  without an ingest time take this path today too);
* ``by time``: each document under the update effective at its ``meta["ingested_at"]``, from
  a history of ``--versions`` versions (one look-up per ingest batch, a bisection).

Prints documents/s of each and their ratio. With ``--bootstrap`` it also measures the reader
thread's own CPU (a watermark query every ``poll_s``) over 20 s, as a share of one core.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas import BudgetUpdate, CuratedDocument  # noqa: E402
from streams.budget.reader import BudgetHistory, StaticBudgetProvider  # noqa: E402
from streams.stages.budget_prune import BudgetPruneStage  # noqa: E402


class HistoryProvider:
    def __init__(self, history: BudgetHistory):
        self.history = history

    def current(self):
        return self.history.newest()

    def at(self, t):
        return self.history.at(t)


def updates(n: int, t0: float) -> list[BudgetUpdate]:
    weights = {f"src{i}": 0.3 + 0.05 * (i % 10) for i in range(50)}
    weights.update({f"src{i}|lang=en": 0.5 for i in range(50)})
    return [BudgetUpdate(budget_version=v, window_tokens=1000, budgets={}, method="bench", weights=dict(weights),
                         effective_at=t0 + v) for v in range(1, n + 1)]


def docs(n: int, t0: float, versions: int, per_batch: int = 256, timed: bool = True) -> list[CuratedDocument]:
    out = []
    for i in range(n):
        # an ingest batch of 256 shares one time, spread over the history's span
        meta = {"ingested_at": t0 + (i // per_batch) % versions + 0.5} if timed else {}
        out.append(CuratedDocument(id=f"d{i}", text="word " * (50 + i % 400), source=f"src{i % 60}",
                                   content_hash=f"{i * 2654435761 % (1 << 63):016x}", recipe_version="bench",
                                   lang="en", meta=meta))
    return out


def run(stage: BudgetPruneStage, batch: list[CuratedDocument], size: int = 256) -> float:
    t = time.perf_counter()
    for i in range(0, len(batch), size):
        stage.process_batch(batch[i:i + size])
    return time.perf_counter() - t


def reader_cpu(bootstrap: str, seconds: float = 20.0) -> None:
    import threading

    import psutil

    from iolayer.topics_admin import create_topics
    from schemas import Topics
    from streams.budget.reader import KafkaBudgetReader

    ns = f"bench{int(time.time())}"
    create_topics(bootstrap, Topics(namespace=ns))
    reader = KafkaBudgetReader(bootstrap, ns)
    reader.wait_ready(30)
    proc = psutil.Process()

    def thread_cpu() -> float:
        tid = reader._thread.native_id if reader._thread else None
        return sum(t.user_time + t.system_time for t in proc.threads() if t.id == tid)

    c0, t0 = thread_cpu(), time.monotonic()
    time.sleep(seconds)
    used, took = thread_cpu() - c0, time.monotonic() - t0
    reader.close()
    print(f"  reader thread: {used:.3f} CPU s in {took:.0f} s = {100 * used / took:.2f} % of one core "
          f"(threads alive: {threading.active_count()})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--versions", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bootstrap")
    args = ap.parse_args()
    t0 = 1_700_000_000.0
    ups = updates(args.versions, t0)
    history = BudgetHistory()
    for u in ups:
        history.add(u)
    old = BudgetPruneStage(StaticBudgetProvider(ups[-1]))
    new = BudgetPruneStage(HistoryProvider(history))
    plain, timed = docs(args.docs, t0, args.versions, timed=False), docs(args.docs, t0, args.versions)
    best = {"current": float("inf"), "by time": float("inf")}
    for _ in range(args.rounds):  # alternate, keep each one's best round
        best["current"] = min(best["current"], run(old, plain))
        best["by time"] = min(best["by time"], run(new, timed))
    print(f"budget_prune on {args.docs} documents, {args.versions} versions in the history (best of "
          f"{args.rounds} alternating rounds)")
    for name, s in best.items():
        print(f"  {name:<10} {args.docs / s:>10.0f} docs/s  ({1e6 * s / args.docs:.2f} us/doc)")
    print(f"  ratio by time / current: {best['current'] / best['by time']:.3f} (throughput)")
    if args.bootstrap:
        reader_cpu(args.bootstrap)


if __name__ == "__main__":
    main()
