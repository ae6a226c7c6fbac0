"""Reading the metrics back: scrape one exporter into plain samples, and sum them."""
from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Samples:
    """The samples of one scrape: sample name -> [(labels, value)]."""

    by_name: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)

    def get(self, name: str) -> list[tuple[dict[str, str], float]]:
        return self.by_name.get(name, [])

    def total(self, name: str, **match: str) -> float:
        """Sum of ``name`` over the samples whose labels include ``match``."""
        return sum(v for labels, v in self.get(name) if all(labels.get(k) == x for k, x in match.items()))

    def by(self, name: str, label: str, **match: str) -> dict[str, float]:
        """``name`` summed per value of ``label`` (over the samples matching ``match``)."""
        out: dict[str, float] = {}
        for labels, v in self.get(name):
            if all(labels.get(k) == x for k, x in match.items()) and label in labels:
                out[labels[label]] = out.get(labels[label], 0.0) + v
        return out

    def merge(self, other: Samples) -> Samples:
        merged = {k: list(v) for k, v in self.by_name.items()}
        for k, v in other.by_name.items():
            merged.setdefault(k, []).extend(v)
        return Samples(merged)


def parse(text: str) -> Samples:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return Samples(out)


def scrape(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> Samples | None:
    """None when nothing answers on the port (the process is down or has no exporter)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as resp:
            return parse(resp.read().decode("utf-8", errors="replace"))
    except (urllib.error.URLError, OSError, ValueError):
        return None
