"""Atomic checkpoints: write a temporary file, fsync it, rename it into place, fsync the folder.

A reader therefore sees either the previous set of checkpoints or the new one,
never half a file, whatever moment the process is killed at. Files are named
``ckpt-{step:09d}.pt``; the newest readable one is the resume point. Each
checkpoint says whether the loss was healthy when it was written, and the
newest healthy one is kept whatever ``keep`` says, for a rollback.
"""
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

CKPT_RE = re.compile(r"^ckpt-(\d{9})\.pt$")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Run ``write`` on a temporary file beside ``path``, fsync it and rename it into place,
    so that ``path`` never holds a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` never holds a partial file."""
    _atomic_write(path, lambda fh: fh.write(data))


def atomic_torch_save(obj: Any, path: Path) -> None:
    _atomic_write(path, lambda fh: torch.save(obj, fh))


class CheckpointStore:
    def __init__(self, folder: Path, keep: int = 3):
        self.folder = Path(folder)
        self.keep = max(1, keep)

    def path_for(self, step: int) -> Path:
        return self.folder / f"ckpt-{step:09d}.pt"

    def steps(self) -> list[int]:
        if not self.folder.exists():
            return []
        return sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := CKPT_RE.match(p.name)))

    def save(self, step: int, state: dict[str, Any], healthy: bool) -> Path:
        state = dict(state, step=step, healthy=healthy)
        path = self.path_for(step)
        atomic_torch_save(state, path)
        if healthy:
            atomic_write_bytes(self.folder / "GOOD", f"{step}\n".encode())
        self._prune()
        return path

    def good_step(self) -> int | None:
        try:
            step = int((self.folder / "GOOD").read_text().strip())
        except (OSError, ValueError):
            return None
        return step if self.path_for(step).exists() else None

    def _prune(self) -> None:
        steps = self.steps()
        good = self.good_step()
        for step in steps[:-self.keep]:
            if step != good:
                self.path_for(step).unlink(missing_ok=True)
        for tmp in self.folder.glob(".ckpt-*.tmp"):  # left by a kill during a save
            tmp.unlink(missing_ok=True)

    def load(self, step: int) -> dict[str, Any]:
        return torch.load(self.path_for(step), map_location="cpu", weights_only=False)

    def load_latest(self) -> dict[str, Any] | None:
        """The newest checkpoint that can be read (a damaged one is skipped)."""
        for step in reversed(self.steps()):
            try:
                return self.load(step)
            except Exception:  # noqa: BLE001 - a damaged file: fall back to the previous one
                continue
        return None

    def load_good(self) -> dict[str, Any] | None:
        step = self.good_step()
        return self.load(step) if step is not None else None
