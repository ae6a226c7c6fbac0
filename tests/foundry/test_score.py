"""``foundry score``: every operator sees every record, the output keeps the input
fields and adds scores / decisions / details / changes, parameters can be set
from the command line, and any registered operator works (one is registered here)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from foundry.score import parse_settings, score
from schemas import Reason
from streams.stages.base import Stage
from streams.stages.registry import _REGISTRY, register
from tests.conftest import shared_data

EN = ("The city council voted on Tuesday to extend the bus network into the northern suburbs, after a "
      "two-year study found that most residents there drive to work because no route reaches them. "
      "The first new lines are expected to open next spring, and fares will stay the same for a year.")
ZH = ("研究人员在论文中指出，这种新型电池在低温环境下仍能保持百分之八十以上的容量，明显优于目前市场上的同类产品。"
      "他们计划明年与汽车厂商合作开展道路测试，并希望在三年内实现量产。")
# long enough (20+ words) for the quality rules to judge it by its shares of digits
DIGITS = ("Order 4411 2390 8812 ref 77120 99812 code 1239 4412 total 88.12 99.10 12.00 and 4412 3321 9980, "
          "then 5521 6612 7781 8890 1120 3345 4456 5567 6678 7789 8890.")
PAGE = ("Home\nNews\nSport\nWeather\n" + EN
        + "\nWe use cookies to improve your experience.\n© 2020 Example. All rights reserved.")


class _LengthGate(Stage):
    """A test operator: rejects texts shorter than ``min_len`` characters."""

    name = "test_length_gate"

    def __init__(self, min_len: int = 50):
        self.min_len = min_len

    def process_batch(self, docs):
        out = []
        for d in docs:
            if len(d.text) < self.min_len:
                out.append(self.reject(d, Reason.LOW_QUALITY, f"length {len(d.text)} < {self.min_len}",
                                       score=float(len(d.text))))
            else:
                d.scores["test_length_gate"] = float(len(d.text))
                out.append(d)
        return out


if "test_length_gate" not in _REGISTRY:
    register("test_length_gate")(lambda **p: _LengthGate(**p))


def write_jsonl(path: Path, rows) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n")
    return path


def read_jsonl(path: Path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def sample(tmp_path):
    return write_jsonl(tmp_path / "in.jsonl", [
        {"id": "en", "text": EN, "lang": "en", "extra": 1},
        {"id": "zh", "text": ZH},
        {"id": "digits", "text": DIGITS},
        {"id": "page", "text": PAGE},
        {"id": "en-again", "text": EN.replace("Tuesday", "Monday")},
        {"text": "short"},
        "this is not json",
        {"id": "notext", "body": "x"},
    ])


def run_score(*args):
    res = CliRunner().invoke(score, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def test_every_operator_sees_every_record(sample, tmp_path):
    out = tmp_path / "out.jsonl"
    res = run_score(sample, "--operators", "quality_rules,boilerplate_lines,language,near_dedup,test_length_gate",
                    "--out", out)
    rows = read_jsonl(out)
    assert len(rows) == 8
    by_id = {r.get("id"): r for r in rows}
    en = by_id["en"]
    assert en["extra"] == 1 and en["text"] == EN  # input fields untouched
    assert en["decisions"] == {"quality_rules": "keep", "boilerplate_lines": "keep", "language": "keep",
                               "near_dedup": "keep", "test_length_gate": "keep"}
    assert en["scores"]["test_length_gate"] == len(EN)
    assert en["scores"]["quality_rules.stop_words"] >= 10
    assert 0 < en["scores"]["language.lang_confidence"] <= 1
    # rejected by one operator, still judged by the others
    digits = by_id["digits"]
    assert digits["decisions"]["quality_rules"] == "reject:low_quality"
    assert "digit_ratio" in digits["details"]["quality_rules"]
    assert digits["scores"]["quality_rules"] > 0.25
    assert digits["scores"]["quality_rules.digit_ratio"] > 0.25  # every rule's value, for tuning
    assert digits["decisions"]["near_dedup"] == "keep" and digits["decisions"]["test_length_gate"] == "keep"
    # near_dedup sees the file in order
    again = by_id["en-again"]
    assert again["decisions"]["near_dedup"] == "reject:near_duplicate"
    assert again["details"]["near_dedup.duplicate_of"] == "en"
    # changes made by an operator are reported, not applied to the record
    page = by_id["page"]
    assert page["decisions"]["boilerplate_lines"] == "keep"
    change = page["changes"]["boilerplate_lines"]
    assert change["meta"]["boilerplate_lines_removed"] == 6
    assert change["text_chars"][1] < change["text_chars"][0]
    assert "text" not in change and page["text"] == PAGE
    assert by_id["zh"]["changes"]["language"]["lang"] == "zh"
    short = [r for r in rows if r.get("text") == "short"][0]
    assert short["id"] == "line-6" and short["decisions"]["test_length_gate"] == "reject:low_quality"
    errors = [r for r in rows if "error" in r]
    assert len(errors) == 2 and any("not JSON" in e["error"] for e in errors)
    assert "test_length_gate: keep 5, reject 1" in res.stderr


def test_settings_change_thresholds(sample, tmp_path):
    out = tmp_path / "out.jsonl"
    run_score(sample, "-o", "digit_ratio,test_length_gate,language", "-s", "digit_ratio.max_digit_ratio=0.9",
              "-s", "test_length_gate.min_len=1", "-s", 'language.allowed=["zh"]', "--out", out, "--show-text", "-q")
    rows = {r.get("id"): r for r in read_jsonl(out) if "error" not in r}
    assert rows["digits"]["decisions"]["digit_ratio"] == "keep"
    assert all(r["decisions"]["test_length_gate"] == "keep" for r in rows.values())
    assert rows["en"]["decisions"]["language"] == "reject:language"
    assert rows["zh"]["decisions"]["language"] == "keep"


def test_show_text_and_stdout(sample):
    res = run_score(sample, "-o", "boilerplate_lines", "--show-text", "-q")
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    page = [r for r in rows if r.get("id") == "page"][0]
    assert page["changes"]["boilerplate_lines"]["text"].startswith(EN[:40])
    assert "cookies" not in page["changes"]["boilerplate_lines"]["text"]


def test_default_runs_every_operator_that_needs_no_worker_context(tmp_path):
    from streams.stages.registry import default_operator_names, operator_names

    path = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": EN}, {"id": "b", "text": ZH}])
    res = CliRunner().invoke(score, [str(path)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert "skipping" not in res.stderr
    mine = {"quality_rules", "boilerplate_lines", "language", "near_dedup", "test_length_gate", "digit_ratio",
            "density", "toxicity"}  # the shipped models are part of the default set
    assert mine <= set(rows[0]["decisions"]) == set(default_operator_names())
    assert set(operator_names()) - set(default_operator_names()) == {"budget_prune"}
    assert 0 <= rows[0]["scores"]["density"] <= 1 and 0 <= rows[0]["scores"]["toxicity"] <= 1


def test_a_default_operator_that_cannot_be_built_is_an_error(tmp_path, monkeypatch):
    # what a wheel without its model files did: density.json missing
    import streams.stages.density as density

    monkeypatch.setattr(density, "DEFAULT_PARAMS", tmp_path / "missing" / "density.json")
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": EN}])
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(score, [str(path), "--out", str(out)])
    assert res.exit_code == 1 and "'density'" in res.output and "density.json" in res.output
    assert not out.exists()  # nothing written that would look like a full result
    res = CliRunner().invoke(score, [str(path), "-o", "density,language"])
    assert res.exit_code == 2 and "density.json" in res.output


def test_bad_arguments(sample):
    runner = CliRunner()
    res = runner.invoke(score, [str(sample), "-o", "no_such_operator"])
    assert res.exit_code != 0 and "no_such_operator" in res.output
    res = runner.invoke(score, [str(sample), "-o", "digit_ratio", "-s", "digit_ratio.nope=1"])
    assert res.exit_code != 0 and "nope" in res.output
    res = runner.invoke(score, [str(sample), "-o", "digit_ratio", "-s", "quality_rules.max_digit_ratio=1"])
    assert res.exit_code != 0
    with pytest.raises(Exception):
        parse_settings(("missing-dot=1",), ["digit_ratio"])


def test_gzip_input_from_shared_data(tmp_path):
    src = shared_data() / "zh_en_codeswitch.jsonl.gz"
    sample = tmp_path / "cs.jsonl.gz"
    with gzip.open(src, "rt", encoding="utf-8") as fin, gzip.open(sample, "wt", encoding="utf-8") as fout:
        for i, line in enumerate(fin):
            if i >= 200:
                break
            fout.write(line)
    out = tmp_path / "out.jsonl"
    run_score(sample, "-o", "quality_rules,language", "--out", out, "-q")
    rows = read_jsonl(out)
    assert len(rows) == 200
    langs = [r.get("changes", {}).get("language", {}).get("lang", r.get("lang")) for r in rows]
    assert sum(lang in ("zh-en", "en-zh") for lang in langs) >= 100
    assert sum(r["decisions"]["quality_rules"] == "keep" for r in rows) >= 150
