"""``foundry report`` of a finished real run: its figures agree with the manifests and ledger."""
from __future__ import annotations

import json
from collections import Counter
from html.parser import HTMLParser

import pyarrow.parquet as pq
from click.testing import CliRunner

from foundry.report import length_bucket, report
from schemas import BudgetUpdate
from tests.telemetry.live_run import live_run
from trainer.event_log import EventLog


class Page(HTMLParser):
    """The text of each element with an id, the rows by their data- key, the charts and series."""

    def __init__(self):
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.rows: dict[tuple[str, str], dict[str, str]] = {}
        self.charts: list[str] = []
        self.series: dict[str, int] = {}
        self.samples: list[str] = []
        self._id = self._row = self._col = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self._id = a["id"]
        if tag == "tr":
            keys = [(k[5:], v) for k, v in a.items() if k.startswith("data-")]
            self._row = keys[0] if keys else None
            if self._row:
                self.rows[self._row] = {}
        if tag == "td" and "data-col" in a:
            self._col = a["data-col"]
        if tag == "svg":
            self.charts.append(a.get("data-chart"))
        if tag == "polyline":
            self.series[a["data-series"]] = int(a["data-points"])
        if tag == "h3" and "data-sample" in a:
            self.samples.append(a["data-sample"])

    def handle_data(self, data):
        if self._id:
            self.by_id[self._id] = data
            self._id = None
        if self._col and self._row:
            self.rows[self._row][self._col] = data
            self._col = None


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def test_report_of_a_factory_run_matches_manifests_and_ledger(kafka_bootstrap, tmp_path, unique_name):
    with live_run(kafka_bootstrap, tmp_path, unique_name, n_docs=200) as run:
        pass  # drained; the sinks flush on the way out
    out = run.out
    run_dir = run.run_dir
    (run_dir / "summary.json").write_text(json.dumps({"out_dir": str(out)}))
    with open(run_dir / "budgets.jsonl", "w") as f:
        for v, (a, b) in enumerate([(600, 400), (700, 300), (650, 350)], start=1):
            u = BudgetUpdate(budget_version=v, window_tokens=1000, budgets={"web": a, "books": b}, method="test",
                             flagged=["books"] if v == 2 else [])
            f.write(json.dumps({"seen": float(v), **u.to_dict()}) + "\n")
    events = EventLog(run_dir / "trainer" / "runs" / "r1" / "events.jsonl")
    for step in range(1, 6):
        events.emit("train", step=step, loss=5.0 - step * 0.3, train_tokens=step * 1000)
    events.emit("eval", step=5, heldout_loss=4.1, train_tokens=5000)
    events.close()

    res = CliRunner().invoke(report, [str(run_dir)])
    assert res.exit_code == 0, res.output
    page = Page()
    page.feed((run_dir / "report.html").read_text())

    man = pq.read_table(out / "manifest").to_pylist()
    led = pq.read_table(out / "ledger").to_pylist()
    assert man and led
    assert _num(page.by_id["fig-documents"]) == len(man) + len(led) == run.docs_in
    assert _num(page.by_id["fig-kept"]) == len(man)
    assert _num(page.by_id["fig-dropped"]) == len(led)
    assert _num(page.by_id["fig-tokens"]) == sum(r["n_tokens"] for r in man)
    assert _num(page.by_id["fig-shards"]) == len(list((out / "shards").glob("*.tar")))
    for reason, n in Counter(r["reason"] for r in led).items():
        assert _num(page.rows[("reason", reason)]["documents"]) == n
    kept_src, drop_src = Counter(r["source"] for r in man), Counter(r["source"] or "unknown" for r in led)
    for src in set(kept_src) | set(drop_src):
        row = page.rows[("source", src)]
        assert _num(row["kept"]) == kept_src[src] and _num(row["dropped"]) == drop_src[src]
    lengths = Counter(length_bucket(r["n_bytes"]) for r in man)
    for bucket, n in lengths.items():
        assert _num(page.rows[("length", bucket)]["kept"]) == n
    assert set(page.samples) == {r["reason"] for r in led}
    assert {"kept and dropped by source", "dropped by reason", "kept and dropped by language",
            "kept and dropped by length", "budget per source", "loss against training tokens"} <= set(page.charts)
    assert page.series == {"web": 3, "books": 3, "training loss": 5, "held-out loss": 1}

    # The output folder alone gives the same figures, without budgets or curves.
    res = CliRunner().invoke(report, [str(out), "--out", str(tmp_path / "r.html"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["headline"]["kept"] == len(man) and data["budgets"] == []


def test_report_refuses_a_folder_that_is_no_run(tmp_path):
    res = CliRunner().invoke(report, [str(tmp_path)])
    assert res.exit_code != 0 and "neither an output folder" in res.output
    (tmp_path / "summary.json").write_text(json.dumps({"out_dir": str(tmp_path / "gone")}))
    res = CliRunner().invoke(report, [str(tmp_path)])
    assert res.exit_code != 0 and "names no existing output folder" in res.output


def test_length_buckets_are_powers_of_four():
    assert length_bucket(None) == "unknown"
    assert length_bucket(1) == "1-3 B"
    assert length_bucket(100) == "64-255 B"
    assert length_bucket(4096) == "4,096-16,383 B"
