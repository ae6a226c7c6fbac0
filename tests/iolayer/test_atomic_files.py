"""Atomic writes: the old content survives a failed write, no temporary is left behind, and
a writer that checks its own file can refuse it before it is published."""
from __future__ import annotations

import pytest

from iolayer.atomic_files import atomic_write, atomic_write_bytes, atomic_write_text


def test_write_replaces_and_returns_the_writers_result(tmp_path):
    target = tmp_path / "sub" / "state.json"
    atomic_write_text(target, "one")
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert tmp.parent == target.parent and tmp.name.startswith(".state.json.") and tmp.name.endswith(".tmp")
        tmp.write_text("two")
        return 42

    assert atomic_write(target, write) == 42
    assert target.read_text() == "two" and not seen[0].exists()
    atomic_write_bytes(target, b"\x00three")
    assert target.read_bytes() == b"\x00three"
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")

    def half_then_fail(tmp):
        tmp.write_bytes(b"half a fi")
        raise ValueError("check failed")

    with pytest.raises(ValueError, match="check failed"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
