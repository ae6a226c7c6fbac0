"""Each process of a real run exports its metrics; their values agree with the run's own output."""
from __future__ import annotations

import time

from schemas import Topics
from telemetry.scrape import scrape
from tests.telemetry.live_run import live_run


def _scrape_all(run) -> dict:
    return {name: scrape(port) for name, port in run.services.ports.items()}


def test_every_process_exports_figures_that_match_the_run(kafka_bootstrap, tmp_path, unique_name):
    with live_run(kafka_bootstrap, tmp_path, unique_name) as run:
        truth = run.outcomes()
        deadline = time.monotonic() + 60
        # The sinks' counters move when a part is durable; offsets are committed and the lag
        # probed every few seconds, so the lag reaches zero a little after the drain.
        while True:
            got = _scrape_all(run)
            w, sw, led = got["worker"], got["shard-writer"], got["ledger"]
            ready = (w and sw and led and sw.total("foundry_sink_rows_total") == truth["kept"]
                     and led.total("foundry_sink_rows_total") == truth["rejected"]
                     and w.get("foundry_consumer_lag") and sw.get("foundry_consumer_lag")
                     and not any(v for _, v in w.get("foundry_consumer_lag") + sw.get("foundry_consumer_lag")))
            if ready or time.monotonic() > deadline:
                break
            time.sleep(1)
    assert w is not None and sw is not None and led is not None, "a process exported nothing"
    assert truth["kept"] > 0 and truth["rejected"] > 0
    # Worker: every raw document came in once, and curate kept exactly what reached the manifest.
    assert w.total("foundry_docs_in_total", stage="ingest") == truth["docs_in"]
    assert w.total("foundry_docs_kept_total", stage="curate") == truth["kept"]
    rejected = w.by("foundry_docs_rejected_total", "reason")
    assert {r: int(n) for r, n in rejected.items() if n} == truth["reasons"]
    assert w.total("foundry_docs_in_total", stage="curate") == w.total("foundry_docs_kept_total", stage="ingest")
    assert w.total("foundry_bytes_in_total", stage="ingest") > 0
    # Per-operator latency and CPU, and the state of the dedup filters.
    ops = w.by("foundry_operator_batch_seconds_count", "operator")
    assert {"dedup", "near_dedup"} <= set(ops) and all(n > 0 for n in ops.values())
    assert w.total("foundry_operator_cpu_seconds_total") > 0
    fill = w.by("foundry_bloom_fill_ratio", "partition")
    assert fill and all(0 < f < 1 for f in fill.values())
    assert all(0 <= p < 1e-3 for p in w.by("foundry_bloom_fp_rate_estimate", "partition").values())
    assert sum(w.by("foundry_near_dup_index_docs", "partition").values()) > 0
    # Everything was consumed: the lag of each partition is zero at the end.
    topics = Topics(namespace=unique_name)
    assert {lab["topic"] for lab, _ in w.get("foundry_consumer_lag")} == {f"{unique_name}.raw", topics.sequenced,
                                                                         topics.keyed}
    assert all(v == 0 for _, v in w.get("foundry_consumer_lag") + sw.get("foundry_consumer_lag"))
    # Sinks: rows, shards and tokens as on disk.
    assert sw.total("foundry_sink_rows_total", sink="manifest") == truth["kept"]
    assert led.total("foundry_sink_rows_total", sink="ledger") == truth["rejected"]
    assert sw.total("foundry_shards_total") == truth["shards"]
    assert sw.total("foundry_shard_tokens_total") == truth["tokens"]
    assert sw.total("foundry_shard_bytes_total") == sum(p.stat().st_size for p in (run.out / "shards").glob("*.tar"))
    for name, s in (("worker", w), ("shard-writer", sw), ("ledger", led)):
        assert s.total("foundry_process", process=name) == 1
