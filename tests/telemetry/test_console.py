"""The console: no client-library noise while a broker starts, one waiting line, summaries."""
from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import subprocess
import sys

from rich.console import Console

from telemetry.console import print_summary, progress_bar, waiting

CLIENT_NOISE = ("Connection refused", "|FAIL|", "Connect to ipv4")
RAW_CLIENT_LINE = re.compile(r"^%\d\|", re.M)  # librdkafka's own stderr format: %<level>|<time>|<facility>|


def _free_pair() -> int:
    """A port p with p and p + 1 free (a single-node cluster's broker and controller ports)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def test_quiet_broker_probe_writes_no_client_lines_and_raises_a_clear_error():
    # librdkafka writes to file descriptor 2 itself, so only a child process shows what reaches stderr.
    code = ("from iolayer.publisher import BrokerUnavailable, check_broker\n"
            "try:\n    check_broker('127.0.0.1:%d', timeout=2, quiet=True)\n"
            "except BrokerUnavailable as e:\n    print(e)\n") % _free_pair()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "no Kafka broker answers" in res.stdout
    assert not any(n in res.stderr for n in CLIENT_NOISE), res.stderr


def test_publisher_client_lines_go_through_logging():
    # A child process: librdkafka would write to file descriptor 2 itself.
    code = ("import logging, sys\n"
            "logging.basicConfig(stream=sys.stdout, level=logging.DEBUG, format='LOG %(name)s %(message)s')\n"
            "from iolayer.publisher import RecordPublisher\n"
            "from schemas import RawDocument\n"
            "p = RecordPublisher('127.0.0.1:PORT', 't', check=False, delivery_timeout_s=3)\n"
            "p.publish(RawDocument(id='a', text='x', source='s'))\n"
            "for _ in range(8):\n    p._producer.poll(0.5)\n").replace("PORT", str(_free_pair()))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "LOG librdkafka" in res.stdout, res.stdout + res.stderr
    assert not RAW_CLIENT_LINE.search(res.stderr), res.stderr


def test_waiting_is_one_line_off_a_terminal(capsys):
    console = Console(file=sys.stderr, force_terminal=False)
    with waiting("waiting for the broker", console):
        pass
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["waiting for the broker ..."]


def test_progress_bar_shows_count_and_rate():
    console = Console(record=True, width=120, force_terminal=False, file=io.StringIO())
    with progress_bar("docs", total=10, console=console) as update:
        for i in range(1, 11):
            update(i)
    text = console.export_text()
    assert "10/10" in text and "100%" in text


def test_summary_is_a_table_or_json(capsys):
    figures = {"docs_in": 1200, "mb_per_s": 0.9412, "rejections_by_reason": {"duplicate": 3}}
    console = Console(record=True, width=100, file=io.StringIO())
    print_summary("run summary", figures, console=console)
    text = console.export_text()
    assert "docs in" in text and "1,200" in text and "duplicate 3" in text
    print_summary("run summary", figures, as_json=True)
    assert json.loads(capsys.readouterr().out) == figures


def test_foundry_run_starting_its_own_broker_prints_no_client_errors(tmp_path):
    port = _free_pair()
    env = {**os.environ, "COLUMNS": "120"}
    res = subprocess.run([sys.executable, "-m", "foundry.cli", "run", "--bootstrap", f"127.0.0.1:{port}",
                          "--kafka-home", str(tmp_path / "kafka"), "--out", str(tmp_path / "out"),
                          "--namespace", "quiet", "--generate", "150", "--timeout", "300"],
                         capture_output=True, text=True, timeout=600, env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert not any(n in out for n in CLIENT_NOISE), out[:3000]
    assert not RAW_CLIENT_LINE.search(out), out[:3000]
    assert sum("waiting for the broker" in line for line in out.splitlines()) == 1
    assert "docs in" in res.stdout and "shards are in" in res.stdout  # the summary table
