"""Dependencies point one way. Every import of every module of the packages (imports inside
functions included) is checked against the layering:

    schemas            -> nothing of the project
    iolayer, telemetry -> schemas
    streams, consumers -> schemas, iolayer, telemetry (never each other, never foundry)
    trainer            -> schemas, iolayer, telemetry
    foundry (the CLI)  -> anything; nothing imports foundry

bench/ and tests/ may import anything. A failure lists every violating file:line.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROJECT = {"schemas", "iolayer", "telemetry", "streams", "consumers", "trainer", "foundry", "models"}
SHARED = {"schemas", "iolayer", "telemetry"}
ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "iolayer": {"schemas"},
    "telemetry": {"schemas"},
    "streams": SHARED,
    "consumers": SHARED,
    "trainer": SHARED,
    "models": PROJECT - {"foundry"},  # build scripts (run from a checkout) and the shipped artifacts
    "foundry": PROJECT,
}


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the tree, relative ones resolved."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
    return out


def violations(root: Path, packages: dict[str, set[str]]) -> list[str]:
    found = []
    for package, allowed in sorted(packages.items()):
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            module = ".".join(rel.with_suffix("").parts)
            is_package = path.name == "__init__.py"
            if is_package:
                module = module.rsplit(".", 1)[0]
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(rel))
            for line, name in imported_modules(tree, module, is_package):
                top = name.split(".")[0]
                if top in PROJECT and top != package and top not in allowed:
                    found.append(f"{rel}:{line}: {package} imports {name}")
    return found


def test_dependencies_point_one_way():
    bad = violations(ROOT, ALLOWED)
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_every_package_is_checked():
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert on_disk <= set(ALLOWED), f"packages without a layering rule: {sorted(on_disk - set(ALLOWED))}"


@pytest.mark.parametrize("package,source,expect", [
    ("schemas", "def f():\n    from streams.app import create_app\n", "schemas/m.py:2: schemas imports streams.app"),
    ("consumers", "import streams.publisher\n", "consumers/m.py:1: consumers imports streams.publisher"),
    ("trainer", "from streams.budget import token_prune\n", "trainer/m.py:1: trainer imports streams.budget"),
    ("streams", "from foundry import cli\n", "streams/m.py:1: streams imports foundry"),
    ("iolayer", "import telemetry\n", "iolayer/m.py:1: iolayer imports telemetry"),
])
def test_a_violation_is_reported_with_file_and_line(tmp_path, package, source, expect):
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "m.py").write_text(source)
    assert violations(tmp_path, {package: ALLOWED[package]}) == [expect]


def test_allowed_and_relative_imports_pass(tmp_path):
    (tmp_path / "streams" / "sub").mkdir(parents=True)
    (tmp_path / "streams" / "__init__.py").write_text("")
    (tmp_path / "streams" / "sub" / "__init__.py").write_text("from . import m\n")
    (tmp_path / "streams" / "sub" / "m.py").write_text(
        "import json\nfrom schemas import Topics\nfrom iolayer import x\nfrom ..other import y\nfrom .. import z\n")
    assert violations(tmp_path, {"streams": ALLOWED["streams"]}) == []
    (tmp_path / "streams" / "sub" / "m.py").write_text("from ...foundry import cli\n")
    assert violations(tmp_path, {"streams": ALLOWED["streams"]}) == ["streams/sub/m.py:1: streams imports foundry"]
