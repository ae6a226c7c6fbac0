"""``foundry dashboard`` end to end: a real run (pipeline, tiny trainer, budget agent), the page
opened in headless Chromium, each plot checked for the run's data, a screenshot kept."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from foundry.dashboard import History, make_server
from foundry.dashboard_page import PLOTS
from schemas import Topics
from tests.telemetry.live_run import live_run

ARTIFACTS = Path(os.environ.get("FOUNDRY_TEST_ARTIFACTS", "var/test-artifacts"))


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing; .ci/run installs it")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return path


class Dom(HTMLParser):
    """Each chart's point count and each series' point count and last value."""

    def __init__(self):
        super().__init__()
        self.charts: dict[str, int] = {}
        self.series: dict[str, dict[str, tuple[int, float]]] = {}
        self.processes: dict[str, str] = {}
        self._chart = None
        self._proc = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg" and "data-chart" in a:
            self._chart = a["data-chart"]
            self.charts[self._chart] = int(a.get("data-points", 0))
            self.series[self._chart] = {}
        elif tag == "polyline" and self._chart:
            self.series[self._chart][a["data-series"]] = (int(a["data-points"]), float(a["data-last"]))
        elif tag == "span" and "data-process" in a:
            self._proc = a["data-process"]

    def handle_data(self, data):
        if self._proc:
            self.processes[self._proc] = data
            self._proc = None


def _history(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/history", timeout=5) as r:
        return json.loads(r.read())


def test_dashboard_plots_a_real_run_in_chromium(kafka_bootstrap, tmp_path, unique_name):
    browser = chromium()
    run_dir = tmp_path / "factory"
    run_dir.mkdir()
    server, stop = make_server(str(run_dir), "127.0.0.1", 0, interval=0.5)
    port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with live_run(kafka_bootstrap, tmp_path, unique_name, n_docs=400, loop=True) as run:
            deadline = time.monotonic() + 300
            while True:  # the trainer must train and evaluate, the agent close a window on its scores
                plots = _history(port)["plots"]
                have = {p for p, series in plots.items() if any(series.values())}
                if have >= {pid for pid, *_ in PLOTS} and len(plots["loss"]) == 2 or time.monotonic() > deadline:
                    break
                run.services.check_alive()
                time.sleep(2)
            url = f"http://127.0.0.1:{port}/"
            common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                      f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=8000"]
            dom = subprocess.run(common + ["--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "dashboard.png"
            shot.unlink(missing_ok=True)
            subprocess.run(common + ["--window-size=1300,1500", f"--screenshot={shot}", url], capture_output=True,
                           timeout=120)
            truth = Counter(r["reason"] for r in pq.read_table(run.out / "ledger").to_pylist())
            sources = set(pq.read_table(run.out / "manifest").column("source").to_pylist())
    finally:
        stop.set()
        server.shutdown()
    page = Dom()
    page.feed(dom)
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert set(page.charts) == {pid for pid, *_ in PLOTS}
    empty = [c for c, n in page.charts.items() if n == 0]
    assert not empty, f"plots without data: {empty}"
    assert {page.processes[n].split(": ")[1] for n in ("worker", "shard-writer", "ledger", "trainer", "budget")} \
        == {"running"}
    # Plotted values are the run's: rejections per reason end at the ledger's counts.
    assert {r: int(v[1]) for r, v in page.series["rejections"].items()} == dict(truth)
    assert max(n for n, _ in page.series["throughput"].values()) > 1
    assert sources <= set(page.series["keep_rate"])
    topics = Topics(namespace=unique_name)
    assert {topics.keyed, topics.tokenized, topics.rejections} <= set(page.series["lag"])
    assert set(page.series["loss"]) == {"training loss", "held-out loss"}
    assert set(page.series["value_scores"]) and set(page.series["budgets"])


def test_history_keeps_the_last_points_of_each_series_and_loss_against_tokens():
    h = History(max_points=3)
    base = {"rates": {}, "rejections": {}, "keep_rate": {}, "budgets": {}, "value_scores": {}, "lag": {},
            "trainer": {"tokens": None}, "processes": []}
    for i in range(5):
        h.add({**base, "time": h.t0 + i, "rejections": {"duplicate": i * 2},
               "trainer": {"tokens": 100 * i, "loss": 5.0 - i, "heldout_loss": None}})
    j = json.loads(json.dumps(h.to_json()))["plots"]  # as the page receives it
    assert j["rejections"]["duplicate"] == [[2.0, 4], [3.0, 6], [4.0, 8]]
    assert [p[0] for p in j["loss"]["training loss"]] == [200, 300, 400]
