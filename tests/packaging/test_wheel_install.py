"""The project as a user installs it: a wheel built from the tree, installed (not editable) into a
fresh virtual environment, run from a folder outside the repository.

The temporary venv gets our code only from the wheel. Its third-party dependencies (torch,
onnxruntime, faust, ...) come from the project's venv through a ``.pth`` line, so nothing is
downloaded; a ``.pth`` line adds a folder to ``sys.path`` without running the ``.pth`` files in
it, so the project's editable install stays out of the way (asserted below).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EN = ("The city council voted on Tuesday to extend the bus network into the northern suburbs, after a "
      "two-year study found that most residents there drive to work because no route reaches them.")
ZH = "研究人员在论文中指出，这种新型电池在低温环境下仍能保持百分之八十以上的容量，明显优于目前市场上的同类产品。"
TOXIC = "you are a stupid worthless idiot and everyone hates you, shut up you moron"


def _run(cmd: list[str], *, cwd: Path, timeout: float, env: dict[str, str] | None = None):
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{cmd} exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _copy_tree(dest: Path) -> Path:
    """The files git would ship (tracked, plus new files not ignored): no build/ leftovers, no venv."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():  # a file deleted but not yet committed is still listed
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wheel")
    src = _copy_tree(root / "src")
    dist = root / "dist"
    # No build isolation: the venv's setuptools builds it, without a package index.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir", "-q",
          "-w", str(dist), str(src)], cwd=root, timeout=300)
    (wheel,) = dist.glob("token_foundry-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root, timeout=120)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
          "--no-cache-dir", "-q", str(wheel)], cwd=root, timeout=300)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=root, timeout=60).stdout.strip())
    (site / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = root / "elsewhere"  # outside the repository: nothing resolves against the checkout
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1")
    return {"venv": venv, "python": python, "foundry": venv / "bin" / "foundry", "work": work, "env": env,
            "wheel": wheel}


def test_our_code_and_models_come_from_the_wheel(installed):
    code = ("import json, foundry, models, schemas, streams.stages.density as d, foundry.broker_config as b\n"
            "print(json.dumps([foundry.__file__, models.__file__, schemas.__file__, str(d.DEFAULT_PARAMS),"
            " str(b.POM), str(b.LOG4J_TEMPLATE)]))")
    res = _run([str(installed["python"]), "-c", code], cwd=installed["work"], env=installed["env"], timeout=120)
    paths = [Path(p).resolve() for p in json.loads(res.stdout)]
    venv = installed["venv"].resolve()
    for p in paths:
        assert p.is_relative_to(venv) and p.is_file(), p
        assert not p.is_relative_to(REPO), p


def test_foundry_score_from_another_folder_runs_the_models(installed):
    work = installed["work"]
    rows = [{"id": "en", "text": EN}, {"id": "zh", "text": ZH}, {"id": "toxic", "text": TOXIC}]
    (work / "in.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    res = _run([str(installed["foundry"]), "score", "in.jsonl", "--out", "scored.jsonl"], cwd=work,
               env=installed["env"], timeout=300)
    assert "skipping" not in res.stderr
    scored = {r["id"]: r for r in map(json.loads, (work / "scored.jsonl").read_text().splitlines())}
    assert set(scored) == {"en", "zh", "toxic"}
    for r in scored.values():
        assert {"density", "toxicity", "language", "quality_rules"} <= set(r["decisions"]), r
        assert 0.0 <= r["scores"]["density"] <= 1.0 and 0.0 <= r["scores"]["toxicity"] <= 1.0, r
    # the shipped models score, not merely load: the insult is flagged, the news text is not
    assert scored["toxic"]["decisions"]["toxicity"] == "reject:toxic"
    assert scored["en"]["decisions"]["toxicity"] == "keep"
    assert scored["toxic"]["scores"]["toxicity"] > scored["en"]["scores"]["toxicity"]


@pytest.mark.kafka
def test_foundry_run_from_another_folder_completes(installed, kafka_bootstrap, unique_name):
    try:
        from schemas.recipe import load_recipe
    except ImportError:  # before the recipe contract moved to schemas/
        from foundry.recipe import load_recipe

    work = installed["work"]
    res = _run([str(installed["foundry"]), "run", "--generate", "200", "--bootstrap", kafka_bootstrap,
                "--namespace", unique_name, "--raw-topic", f"{unique_name}.raw", "--out", "out", "--json",
                "--timeout", "240"], cwd=work, env=installed["env"], timeout=300)
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert summary["docs_in"] == 200
    assert summary["docs_written"] + summary["duplicates"] + summary["rejected_other"] == 200
    assert summary["docs_written"] > 0 and summary["shards"] >= 1
    out_dir = (work / summary["out_dir"]).resolve()
    assert out_dir.is_relative_to(work.resolve()) and list(out_dir.rglob("*.tar"))
    # The installed default recipe found the shipped tokenizer: same recipe, same model bytes,
    # so the same version as the checkout's.
    assert summary["recipe_version"] == load_recipe().version
