"""bench/gpu.sh --cpu: the GPU script's steps, tiny, on the CPU, so the script does not rot."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import shared_data

REPO = Path(__file__).resolve().parents[2]


def test_gpu_script_runs_every_step_on_cpu_and_writes_its_figures(tmp_path):
    shared_data()  # the budget step reads the real corpora
    out = tmp_path / "figures"
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh"), "--cpu", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = (out / "figures.txt").read_text()
    for step in ("trainer tests on CPU (a sample)", "trainer benchmark, tiny", "budget experiment (shortened)"):
        assert f"== {step}: exit 0" in figures, step
    trainer = json.loads((out / "trainer_tiny.json").read_text())
    assert trainer["device"] == "cpu" and trainer["trainer_no_values_tokens_per_s"] > 0
    assert trainer["flops_per_token"] > 0 and trainer["mfu_bare_loop"] is None  # no CPU peak given
    budget = json.loads((out / "budget" / "budget_result.json").read_text())
    runs = {r["arm"]: r for r in budget["runs"]["0"]}
    assert set(runs) == {"none", "value", "value-sampled", "random"}
    assert runs["none"]["score_flops"] == 0 and runs["random"]["score_flops"] == 0
    # every step scored costs more than a sample of the steps; both are counted in the total
    assert runs["value"]["score_flops"] > runs["value-sampled"]["score_flops"] > 0
    for r in runs.values():
        assert r["total_flops"] == r["train_flops"] + r["score_flops"] and r["steps"] == 30
    assert (out / "budget" / "budget_loss.png").stat().st_size > 0
