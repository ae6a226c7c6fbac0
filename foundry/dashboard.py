"""``foundry dashboard``: a local web page that plots a running factory over time.

A thread takes a snapshot (ps.json + a scrape of every process, as ``foundry status``)
every ``interval`` seconds and keeps the series the page plots; the page
(``foundry.dashboard_page``, no external assets) polls ``/api/history`` and draws them.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import click

from foundry.dashboard_page import PAGE
from telemetry.snapshot import collect

MAX_POINTS = 1800  # an hour at the default interval


class History:
    """The series of each plot: name -> {series: [[x, y], ...]} (x: seconds since start, or tokens)."""

    def __init__(self, max_points: int = MAX_POINTS):
        self.max_points = max_points
        self.t0 = time.time()
        self.plots: dict[str, dict[str, deque]] = {}
        self.last: dict[str, Any] | None = None
        self.lock = threading.Lock()

    def _add(self, plot: str, series: str, x: float, y: float) -> None:
        s = self.plots.setdefault(plot, {}).setdefault(series, deque(maxlen=self.max_points))
        if not s or s[-1][0] != x:
            s.append((round(x, 3), y))

    def add(self, snap: dict[str, Any]) -> None:
        t = snap["time"] - self.t0
        with self.lock:
            for name, rate in snap["rates"].items():
                self._add("throughput", name, t, round(rate, 2))
            for reason, n in snap["rejections"].items():
                self._add("rejections", reason, t, n)
            for src, r in snap["keep_rate"].items():
                self._add("keep_rate", src, t, round(r, 4))
            for key, tokens in snap["budgets"].items():
                self._add("budgets", key, t, tokens)
            for src, v in snap["value_scores"].items():
                self._add("value_scores", src, t, round(v, 5))
            for topic, parts in snap["lag"].items():
                self._add("lag", topic, t, sum(parts.values()))
            tr = snap["trainer"]
            if tr.get("tokens") is not None:
                if tr.get("loss") is not None:
                    self._add("loss", "training loss", tr["tokens"], tr["loss"])
                if tr.get("heldout_loss") is not None:
                    self._add("loss", "held-out loss", tr["tokens"], tr["heldout_loss"])
            self.last = snap

    def to_json(self) -> dict[str, Any]:
        with self.lock:
            procs = [{k: p.get(k) for k in ("name", "state", "restarts", "scraped")}
                     for p in (self.last or {}).get("processes", [])]
            return {"plots": {p: {s: list(v) for s, v in series.items()} for p, series in self.plots.items()},
                    "processes": procs, "time": (self.last or {}).get("time")}


def sample_forever(run_dir: str, history: History, interval: float, stop: threading.Event) -> None:
    snap = None
    while not stop.is_set():
        try:
            snap = collect(run_dir, snap)
            history.add(snap)
        except ValueError:
            pass  # a broken ps.json is rewritten by the supervisor; keep the history
        stop.wait(interval)


def make_server(run_dir: str, host: str, port: int, interval: float) -> tuple[ThreadingHTTPServer, threading.Event]:
    history = History()
    stop = threading.Event()
    threading.Thread(target=sample_forever, args=(run_dir, history, interval, stop), daemon=True,
                     name="dashboard-sampler").start()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if self.path in ("/", "/index.html"):
                body, ctype = PAGE.encode(), "text/html; charset=utf-8"
            elif self.path == "/api/history":
                body, ctype = json.dumps(history.to_json()).encode(), "application/json"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # requests are not news on the console
            pass

    return ThreadingHTTPServer((host, port), Handler), stop


@click.command("dashboard")
@click.option("--run-dir", default="var/factory", show_default=True, type=click.Path(file_okay=False),
              help="The factory's run folder (holds ps.json).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True)
@click.option("--interval", default=2.0, show_default=True, help="Seconds between samples.")
def dashboard(run_dir: str, host: str, port: int, interval: float) -> None:
    """Serve a local page plotting the factory over time (throughput, rejections, keep rates, budgets, loss, lag)."""
    server, stop = make_server(run_dir, host, port, interval)
    click.echo(f"dashboard on http://{host}:{server.server_port}/ (Ctrl-C to stop)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
