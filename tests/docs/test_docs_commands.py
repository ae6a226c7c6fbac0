"""The README and docs/ show what the code does: every command they show resolves, the cheap ones run.

`foundry` lines are checked against the click tree (subcommands, options, choice and number
values, argument counts) without spawning a process; `make` lines against the Makefile;
`python bench/...` lines against the script's argparse options. Commands that need a broker
are only checked this way; `--help` of every documented command and the documented
`foundry score` lines run for real, in-process.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from foundry.cli import main
from tests.docs import doc_commands as dc
from tests.docs import markdown_pages as md

PAGES = md.doc_pages()
COMMANDS = [c for page in PAGES for c in md.page_commands(page)]
FOUNDRY = [c for c in COMMANDS if c.argv[0] in dc.FOUNDRY_PROGRAMS]
# The subsystem pages the README points a newcomer to (deployment.md is another engineer's page).
SUBSYSTEM_PAGES = ["sources", "curation", "trainer", "budgets", "replay", "exactly-once", "benchmarks",
                   "kafka", "contracts"]


def _ids(cmds):
    return [f"{c.where} {' '.join(c.argv[:3])}" for c in cmds]




def test_the_pages_and_their_commands_are_found():
    names = {p.stem for p in PAGES}
    assert "README" in names
    assert set(SUBSYSTEM_PAGES) <= names, sorted(set(SUBSYSTEM_PAGES) - names)
    readme = [c.argv for c in COMMANDS if c.where.startswith("README.md")]
    assert ("make", "demo") in readme and ("make", "test") in readme
    assert FOUNDRY, "no foundry command found in any page"


@pytest.mark.parametrize("cmd", FOUNDRY, ids=_ids(FOUNDRY))
def test_foundry_command_resolves(cmd):
    assert dc.check_foundry(list(cmd.argv), main, cmd.where) == [], cmd.text


@pytest.mark.parametrize("page", PAGES, ids=md.page_name)
def test_foundry_commands_in_prose_resolve(page):
    problems = []
    for cmd in md.inline_foundry_commands(page):
        problems += dc.check_foundry(list(cmd.argv), main, cmd.where, fragment=True)
    assert problems == []


def test_make_commands_name_real_targets():
    cmds = [c for c in COMMANDS if c.argv[0] == "make"]
    problems = [p for c in cmds for p in dc.check_make(list(c.argv), md.ROOT / "Makefile", c.where)]
    assert problems == []


def test_python_commands_name_real_scripts_and_options():
    cmds = [c for c in COMMANDS if dc.PYTHON_PROGRAMS.match(c.argv[0])]
    problems = [p for c in cmds for p in dc.check_python(list(c.argv), md.ROOT, c.where)]
    assert problems == []


@pytest.mark.parametrize("page", PAGES, ids=md.page_name)
def test_every_command_block_is_checked(page):
    assert md.unlabelled_command_blocks(page) == []
    unparsable = [c.where for c in md.page_commands(page) if c.argv[0] == "<unparsable>"]
    assert unparsable == []


@pytest.mark.parametrize("page", PAGES, ids=md.page_name)
def test_yaml_blocks_are_valid_recipes_and_configs(page):
    text = page.read_text(encoding="utf-8")
    problems = [p for b in md.fenced_blocks(text) if b.lang in ("yaml", "yml")
                for p in dc.check_yaml("\n".join(b.lines), f"{md.page_name(page)}:{b.line}")]
    assert problems == []


@pytest.mark.parametrize("page", PAGES, ids=md.page_name)
def test_links_point_at_existing_files_and_headings(page):
    assert md.check_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=md.page_name)
def test_repository_paths_named_in_the_pages_exist(page):
    assert md.check_repo_paths(page) == []


def test_readme_links_every_docs_page():
    readme = (md.ROOT / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in PAGES if p.parent.name == "docs" and f"(docs/{p.name})" not in readme]
    assert missing == []


def test_every_benchmark_script_is_in_benchmarks_md():
    page = (md.ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    scripts = [p for p in sorted((md.ROOT / "bench").glob("*.py"))
               if '__name__ == "__main__"' in p.read_text(encoding="utf-8")]
    assert scripts
    assert [p.name for p in scripts if f"bench/{p.name}" not in page] == []


def test_help_of_every_documented_command_runs():
    paths = {()}
    for cmd in FOUNDRY:
        resolved, path, _ = dc.resolve_foundry(list(cmd.argv[1:]), main)
        if resolved is not None:
            paths.add(tuple(path[1:]))
    runner = CliRunner()
    failed = {}
    for path in sorted(paths):
        result = runner.invoke(main, [*path, "--help"])
        if result.exit_code != 0 or "Usage:" not in result.output:
            failed[" ".join(path)] = (result.exit_code, result.output[-400:], repr(result.exception))
    assert failed == {}
    assert len(paths) > 1


RECORDS = [
    {"id": "en-1", "text": "The committee met on Tuesday to review the library's budget for the coming year. "
                           "Members agreed to extend opening hours on weekends and to buy more books for "
                           "the children's section, which has grown quickly since the school opened nearby."},
    {"id": "zh-1", "text": "图书馆委员会周二开会，讨论了明年的预算。委员们同意延长周末开放时间，并为儿童阅览区购买更多图书。"},
    {"id": "short", "text": "ok"},
]


def _documented_score_runs():
    out = []
    for cmd in FOUNDRY:
        resolved, path, rest = dc.resolve_foundry(list(cmd.argv[1:]), main)
        if path[1:] == ["score"]:
            out.append((cmd, dc.parse_args(resolved, rest, cmd.where)))
    return out


SCORE_RUNS = _documented_score_runs()


def test_the_docs_show_foundry_score():
    assert SCORE_RUNS


@pytest.mark.parametrize("cmd,parsed", SCORE_RUNS, ids=_ids([c for c, _ in SCORE_RUNS]))
def test_documented_score_command_runs(cmd, parsed, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    infile = Path(parsed.positional[0])
    infile.parent.mkdir(parents=True, exist_ok=True)
    infile.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS), encoding="utf-8")
    result = CliRunner().invoke(main, list(cmd.argv[1:]))
    assert result.exit_code == 0, (result.output, repr(result.exception))
    out = parsed.options.get("--out", ["-"])[-1]
    text = result.stdout if out == "-" else Path(out).read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert [r["id"] for r in rows] == [r["id"] for r in RECORDS]
    named = [op for v in parsed.options.get("-o", []) for op in v.split(",")]
    for row in rows:
        assert set(named) <= set(row["decisions"]), row
        assert all(d == "keep" or d.startswith("reject:") for d in row["decisions"].values()), row
        assert row["scores"], row


# --- the checker itself: it must catch what it is there to catch ----------------------------

BAD_PAGE = """# A page with mistakes

```bash
foundry worker --compresion zstd          # typo'd option
foundry worker --compression zstdd        # a value the choice does not have
foundry kafka upp                         # no such subcommand
foundry train --max-steps many            # not a number
foundry score a.jsonl b.jsonl             # one FILE only
foundry ingest files corpus/ \\
    --source books --licnce CC-BY-4.0     # typo on a continuation line
foundry kafka up && foundry topics create --namespce live
make demo DOC=5                           # no such variable
make deploy                               # no such target
python bench/tool.py --stepz 10           # typo'd script option
python bench/tool.py fastt                # not one of the positional's choices
python bench/no_such_bench.py
```

See [the trainer](trainer.md#value-scores), [nothing](missing.md), [no heading](trainer.md#no-such-part).
`streams/no_such_module.py` is named here; the prose names `foundry worker --compressoin`.
"""

GOOD_PAGE = """# A page without mistakes

```bash
foundry worker --compression zstd --recipe out/live/VERSION/recipe.yaml
foundry kafka up --brokers 3 --port 9092 && foundry topics create --namespace live
foundry ingest files corpus/ \\
    --source books --licence CC-BY-4.0
foundry score in.jsonl -o toxicity,density -s toxicity.threshold=0.8 --out=-
nice -n 10 foundry train --config tiny --max-steps 5
make demo DOCS=5
python bench/tool.py fast --steps 10 --json --corpus a.jsonl b.jsonl
```

See [the trainer](trainer.md#value-scores) and `foundry worker --compression`, `streams/stages/`.
"""

# A tree of its own for the make and python checks, so the checker's tests do not move with the project's
# Makefile and benchmarks; foundry lines are checked against the real command tree.
MAKEFILE = "DOCS ?= 10\n.PHONY: demo test\ndemo:\n\techo $(DOCS)\ntest:\n\ttrue\n"
TOOL = """import argparse
ap = argparse.ArgumentParser()
ap.add_argument("what", nargs="?", default="fast", choices=["fast", "slow"])
ap.add_argument("--steps", type=int, default=1)
ap.add_argument("--corpus", nargs="*")
ap.add_argument("--json", action="store_true")
"""


@pytest.fixture
def tmp_tree(tmp_path):
    (tmp_path / "Makefile").write_text(MAKEFILE)
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "tool.py").write_text(TOOL)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "trainer.md").write_text("# Trainer\n\n## Value scores\n\nText.\n")
    return tmp_path


def _problems(page: Path, tree: Path) -> list[str]:
    problems = []
    for c in md.page_commands(page):
        if c.argv[0] in dc.FOUNDRY_PROGRAMS:
            problems += dc.check_foundry(list(c.argv), main, c.where)
        elif c.argv[0] == "make":
            problems += dc.check_make(list(c.argv), tree / "Makefile", c.where)
        elif dc.PYTHON_PROGRAMS.match(c.argv[0]):
            problems += dc.check_python(list(c.argv), tree, c.where)
    for c in md.inline_foundry_commands(page):
        problems += dc.check_foundry(list(c.argv), main, c.where, fragment=True)
    return problems + md.check_links(page) + md.check_repo_paths(page, md.ROOT)


def _write(tree: Path, name: str, text: str) -> Path:
    page = tree / "docs" / name
    page.write_text(text, encoding="utf-8")
    return page


def test_checker_finds_every_mistake_of_a_bad_page(tmp_tree):
    page = _write(tmp_tree, "bad.md", BAD_PAGE)
    found = _problems(page, tmp_tree)
    problems = "\n".join(found)
    for needle in ["--compresion is not an option of 'worker'", "'zstdd'", "no subcommand 'upp'",
                   "--max-steps 'many'", "'score' takes 1 argument(s)", "--licnce is not an option",
                   "--namespce is not an option", "make variable DOC ", "make target 'deploy'",
                   "--stepz is not an option", "'fastt' is not one of", "no script bench/no_such_bench.py",
                   "missing.md: no such file", "no heading #no-such-part", "`streams/no_such_module.py` does not exist",
                   "--compressoin is not an option"]:
        assert needle in problems, f"not caught: {needle}\n{problems}"
    assert len(found) == 16, problems  # one problem per mistake, no knock-on noise


def test_checker_passes_a_good_page(tmp_tree):
    assert _problems(_write(tmp_tree, "good.md", GOOD_PAGE), tmp_tree) == []


def test_extraction_joins_continuations_and_splits_chains():
    block = next(md.fenced_blocks("```bash\nfoundry kafka up \\\n  --port 9092 && make test  # why\n```\n"))
    assert [c.argv for c in md.commands_in_block(block)] == [("foundry", "kafka", "up", "--port", "9092"),
                                                            ("make", "test")]


def test_commands_outside_a_bash_block_are_flagged(tmp_tree):
    page = _write(tmp_tree, "plain.md", "```\nfoundry train --config tiny\n```\n\n```\nfoundry train (value) 182\n```\n")
    assert len(md.unlabelled_command_blocks(page)) == 1


@pytest.mark.parametrize("snippet,needle", [
    ("curation:\n  - {op: toxicty, threshold: 0.8}\n", "curation op 'toxicty'"),
    ("curation:\n  - {threshold: 0.8}\n", "invalid recipe"),
    ("partitions: 0\n", "invalid recipe"),
    ("data:\n  skip_repeat_k: 16\n", "invalid trainer config"),
    ("sources:\n  - {kind: files, name: books}\n", "invalid factory config"),
    ("run_dir: var/x\nworkerz: 2\n", "fit no recipe"),
    ("curation: [\n", "not valid YAML"),
])
def test_yaml_checker_refuses_bad_snippets(snippet, needle):
    problems = "\n".join(dc.check_yaml(snippet, "snippet"))
    assert needle in problems, problems


def test_yaml_checker_passes_good_snippets():
    for snippet in ["curation:\n  - {op: toxicity, threshold: 0.8}\n  - {op: budget_prune}\n",
                    "data:\n  skip_repeats_k: 16\n",
                    "workers: 2\nsources:\n  - {kind: generator, name: synthetic, rate: 5}\n"]:
        assert dc.check_yaml(snippet, "snippet") == [], snippet


def test_contracts_page_lists_every_rejection_reason_and_topic():
    import re

    from schemas import Topics
    from schemas.records import Reason

    page = (md.ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
    reasons = page[page.index("Rejection reasons are a fixed set:"):].split("\n\n", 1)[0]
    assert set(re.findall(r"`(\w+)`", reasons)) == {r.value for r in Reason}
    named = set(re.findall(r"`(foundry\.[\w<>.-]+)`", page))
    topics = {t.name.replace("foundry.NS.", "foundry.<ns>.") for t in Topics(namespace="NS").specs()}
    assert topics <= named, sorted(topics - named)
