"""The output folder runs out of space (a small tmpfs) under a running factory, then gets room
again: the sinks fail and are restarted until they can write, nothing is lost or doubled, and
`foundry audit` is clean. Needs root (mount)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from tests.faults.factory_driver import Factory, wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _no_space_logged(run_dir) -> bool:
    return any("No space left" in p.read_text(errors="replace") for p in run_dir.rglob("*.log"))


def test_output_disk_full_then_recovered(cluster3, tmp_path, unique_name, small_disk):
    factory = Factory(tmp_path, cluster3.bootstrap, unique_name, n_docs=0, rate=60, out=small_disk / "out")
    factory.up()
    try:
        wait_for(lambda: _no_space_logged(factory.run_dir), 300, "the output disk to fill", every=2.0)
        full_at = shutil.disk_usage(small_disk).free
        time.sleep(10)  # the sinks keep failing and being restarted meanwhile
        subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
        time.sleep(15)
    finally:
        subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], capture_output=True)
        summary = factory.down_and_audit()
    print(f"disk full ({full_at} bytes free) then 256 MiB: {summary['docs_in']} documents in, "
          f"restarts {summary['restarts']}, audit clean")
