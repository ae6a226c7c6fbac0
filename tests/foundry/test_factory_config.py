"""The factory config: defaults that need nothing, clear errors, and the processes it names."""
from __future__ import annotations

from pathlib import Path

import pytest

from foundry.demo import demo_config
from foundry.factory import process_specs
from foundry.factory_config import ConfigError, load_factory_config


def test_defaults_need_nothing(tmp_path):
    cfg = load_factory_config(None)
    assert cfg.workers == 1 and cfg.trainer.enabled and cfg.budget.enabled
    assert [s.kind for s in cfg.sources] == ["generator"]
    empty = tmp_path / "f.yaml"
    empty.write_text("")
    assert load_factory_config(empty) == cfg


@pytest.mark.parametrize("body, says", [
    ("workerz: 2\n", "workerz"),
    ("workers: 0\n", "workers"),
    ("sources: [{kind: files, name: books}]\n", "needs paths"),
    ("sources: [{kind: generator, name: a}, {kind: generator, name: a}]\n", "unique"),
    ("sources: [{kind: warc, name: w, paths: [x], watch_s: 5}]\n", "watch_s is for kind files"),
    ("sources: [{kind: rss, name: r}]\n", "sources.0.kind"),
    ("trainer: {nice: 40}\n", "trainer.nice"),
    ("- a list\n", "mapping"),
    ("workers: [\n", "not valid YAML"),
])
def test_bad_configs_are_clear_errors(tmp_path, body, says):
    path = tmp_path / "factory.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=says):
        load_factory_config(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_factory_config(tmp_path / "nope.yaml")


def test_process_specs_name_every_part_of_the_loop(tmp_path):
    cfg = load_factory_config(None, {"run_dir": str(tmp_path), "workers": 2, "metrics_port": 9400,
                                     "sources": [{"kind": "generator", "name": "salad", "rate": 4},
                                                 {"kind": "files", "name": "drop", "paths": ["drop/"], "watch_s": 2}]})
    specs = {s.name: s for s in process_specs(cfg, Path("out/live/v/recipe.yaml"))}
    assert list(specs) == ["shard-writer", "ledger", "worker-0", "worker-1", "budget", "trainer",
                           "source-salad", "source-drop"]
    assert {s.kind for s in specs.values()} == {"sink", "worker", "budget", "trainer", "source"}
    trainer = specs["trainer"]
    assert trainer.nice == 10 and "torch_threads=1" in trainer.argv and trainer.env["OMP_NUM_THREADS"] == "1"
    assert "--run-dir" in trainer.argv and str(tmp_path / "trainer") in trainer.argv
    salad = specs["source-salad"].argv
    assert salad[salad.index("--rate") + 1] == "4.0" and "--state-dir" in salad
    drop = specs["source-drop"].argv
    assert drop[drop.index("--watch") + 1] == "2.0"
    assert [s.metrics_port for s in specs.values()] == list(range(9400, 9408))


def test_the_demo_mixes_real_and_low_value_sources_and_holds_out_real_text(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with_data = demo_config(120, data=data, run_dir=str(tmp_path / "d"))
    names = [s.name for s in with_data.sources]
    assert names == ["web", "zhwiki", "forum", "synthetic", "boilerplate", "repeated"]
    forum = next(s for s in with_data.sources if s.name == "forum")
    assert forum.flood_after == 180  # half of what it sends in 120 s at 3 documents a second
    assert with_data.trainer.set["data.heldout_sources"] == ["web", "zhwiki"]
    alone = demo_config(120, data=tmp_path / "missing")
    assert [s.kind for s in alone.sources] == ["generator"] * 5  # a clone with nothing beside it
    assert alone.trainer.set["data.heldout_sources"] == ["gen-text"]
