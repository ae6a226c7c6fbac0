"""Small helpers shared by the sources tests (reading a topic back, running the CLI)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, TopicPartition

from schemas import RawDocument

REPO = Path(__file__).resolve().parents[3]


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[RawDocument]:
    """Every message of ``topic`` from the start to the current end, decoded."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-reader-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "enable.partition.eof": True, "log_level": 0})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        ends = {}
        for p in md.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            if hi > lo:
                ends[p] = hi
        if not ends:
            return []
        c.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list[RawDocument] = []
        left = set(ends)
        deadline = time.monotonic() + timeout
        while left and time.monotonic() < deadline:
            for msg in c.consume(500, timeout=0.5):
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        left.discard(msg.partition())
                    continue
                out.append(RawDocument.decode(msg.value()))
                if msg.offset() >= ends[msg.partition()] - 1:
                    left.discard(msg.partition())
        assert not left, f"could not read {topic} to its end"
        return out
    finally:
        c.close()


def id_counts(docs: list[RawDocument]) -> Counter:
    return Counter(d.id for d in docs)


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "foundry.cli_sources", *args]


def run_cli(*args: str, env: dict | None = None, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(cli_cmd(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def spawn_cli(*args: str, env: dict | None = None, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "w") if log else subprocess.DEVNULL
    return subprocess.Popen(cli_cmd(*args), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})
