"""Atomic checkpoints: write a temporary file, fsync it, rename it into place, fsync the folder.

A reader therefore sees either the previous set of checkpoints or the new one,
never half a file, whatever moment the process is killed at. Files are named
``ckpt-{step:09d}.pt``; the newest readable one is the resume point. Each
checkpoint says whether the loss was healthy when it was written, and the
newest healthy one is kept whatever ``keep`` says, for a rollback.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from iolayer.atomic_files import atomic_write, atomic_write_bytes, fsync_dir  # noqa: F401  (imported from here)

CKPT_RE = re.compile(r"^ckpt-(\d{9})\.pt$")




def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


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
