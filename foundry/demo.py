"""The factory config of ``make demo`` / ``foundry demo``: real text and low-value sources arriving
over time, so the loop has something to tell apart.

Real text: the corpora given (``--corpus``), or, when ``../shared/data`` lies beside the checkout,
web pages, Chinese Wikipedia paragraphs and code-switched posts from it; with neither, generated
text stands in. Low value, generated: word salad (``synthetic``), pages of nothing but navigation
and footers (``boilerplate``), one sentence many times (``repeated``). And one event: the
``forum`` source (code-switched posts, or generated text) turns into a near-duplicate spam flood
half way through the run.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from foundry.factory_config import FactoryConfig, SourceSettings

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL = (("web", "web_extracted_text.jsonl.gz", 3.0), ("zhwiki", "zh_wiki_paragraphs.jsonl.gz", 3.0))
FORUM = "zh_en_codeswitch.jsonl.gz"
# Small budget windows and a short exploration phase: a few minutes must show several budgets.
DEMO_ALLOCATOR = {"explore_tokens": 6000, "prior_tokens": 6000, "anomaly_min_windows": 3, "dup_min_docs": 8}


def demo_sources(seconds: float, corpus: list[str] | None = None, data: Path = SHARED_DATA,
                 rate_scale: float = 1.0) -> list[SourceSettings]:
    r = rate_scale
    half = max(1, int(seconds * 3.0 * r / 2))  # forum documents before its flood
    out: list[SourceSettings] = []
    if corpus:
        for i, path in enumerate(corpus):
            name = Path(path).name.split(".")[0] or f"corpus{i}"
            out.append(SourceSettings(kind="files", name=name, paths=[path], rate=3.0 * r, licence="as given"))
    elif data.is_dir():
        out += [SourceSettings(kind="files", name=name, paths=[str(data / f)], rate=rate * r,
                               licence="see the data README") for name, f, rate in REAL]
    else:
        out.append(SourceSettings(kind="generator", name="gen-text", rate=3.0 * r, seed=1,
                                  extra_args=["--dup-rate", "0", "--near-dup-rate", "0", "--boilerplate-rate", "0"]))
    if data.is_dir() and not corpus:
        out.append(SourceSettings(kind="files", name="forum", paths=[str(data / FORUM)], rate=3.0 * r,
                                  licence="see the data README", flood_after=half))
    else:
        out.append(SourceSettings(kind="generator", name="forum", rate=3.0 * r, seed=2, flood_after=half))
    out += [SourceSettings(kind="generator", name="synthetic", rate=2.0 * r, seed=3),
            SourceSettings(kind="generator", name="boilerplate", gen_kind="boilerplate", rate=1.5 * r, seed=4),
            SourceSettings(kind="generator", name="repeated", gen_kind="repeated", rate=1.5 * r, seed=5)]
    return out


def demo_config(seconds: float, *, corpus: list[str] | None = None, run_dir: str = "var/demo",
                out: str = "out", bootstrap: str = "127.0.0.1:9092", kafka_home: str | None = "var/kafka",
                data: Path = SHARED_DATA, rate_scale: float = 1.0, metrics_port: int = 9400,
                **overrides: Any) -> FactoryConfig:
    sources = demo_sources(seconds, corpus, data, rate_scale)
    real = [s.name for s in sources if s.flood_after is None and (s.kind == "files" or s.name == "gen-text")]
    cfg = {
        "run_dir": run_dir, "out": out, "bootstrap": bootstrap, "kafka_home": kafka_home,
        "namespace": "demo", "raw_topic": "foundry.demo.raw", "workers": 1,
        # held out: a reserved sample of the real-text sources, so value means "helps on real text"
        "trainer": {"config": "tiny", "threads": 1, "nice": 5,
                    "set": {"value.publish_every": 10, "value.every": 2, "eval.every": 25,
                            "data.heldout_from": "reserved",
                            "data.reserve_probe": 0.04, "data.reserve_eval": 0.06,
                            "data.heldout_sources": real}},
        "budget": {"window_tokens": 4000, "window_s": 8.0, "set": DEMO_ALLOCATOR},
        "sources": [s.model_dump() for s in sources],
        "drain_timeout_s": 90.0, "metrics_port": metrics_port,
        **overrides,
    }
    return FactoryConfig.model_validate(cfg)


def reset_demo(cfg: FactoryConfig) -> None:
    """A demo starts from nothing: its run folder, output and topics (its own namespace and raw topic)
    are removed first, so each ``make demo`` shows the whole loop from a cold start."""
    import shutil

    from iolayer.topics_admin import admin_client, delete_topics

    shutil.rmtree(cfg.run_dir, ignore_errors=True)
    shutil.rmtree(Path(cfg.out) / cfg.namespace, ignore_errors=True)
    prefix = (f"foundry.{cfg.namespace}.", f"foundry-budget-{cfg.namespace}", f"foundry-{cfg.namespace}-")
    admin = admin_client(cfg.bootstrap)
    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix) or t == cfg.raw_topic]
    if names:
        delete_topics(cfg.bootstrap, names)
        deadline = time.monotonic() + 30  # deletion is asynchronous: creating them again too soon fails
        while time.monotonic() < deadline and set(names) & set(admin.list_topics(timeout=10).topics):
            time.sleep(0.5)
