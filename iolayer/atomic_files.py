"""Atomic file writes: the one helper every sink, checkpoint and state file uses.

The content goes to a temporary file beside the target (``.NAME.XXXX.tmp``: hidden, and
ending in ``.tmp`` so folder watchers and globs skip it), is fsynced, renamed over the
target and the folder is fsynced. A reader sees the old file or the new one, never half a
file, whatever moment the process is killed at; a failed write leaves no temporary behind.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write_to: Callable[[Path], T]) -> T:
    """``write_to(tmp)`` writes the whole file at the temporary path ``tmp`` (and may check
    it); then it replaces ``path``. Returns what ``write_to`` returned."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        result = write_to(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return result


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
