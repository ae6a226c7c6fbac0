"""What a sink keeps in memory and reads on assignment: bounded, whatever the output's size."""
from __future__ import annotations

from consumers.ledger import RejectionLedger
from consumers.partitioned_sink import RecentKeys
from schemas import Rejection


def _rej(i: int) -> Rejection:
    return Rejection(id=f"x{i}", reason="empty", stage="validate", recipe_version="rv", raw_ref=f"r:0:{i}")


def test_recent_keys_let_the_oldest_batches_go():
    keys = RecentKeys(10, [f"a{i}" for i in range(4)])
    keys.add_batch([f"b{i}" for i in range(4)])
    assert "a0" in keys and len(keys) == 8
    keys.add_batch([f"c{i}" for i in range(4)])  # 12 > 10: the oldest batch goes
    assert "a0" not in keys and "b0" in keys and "c3" in keys and len(keys) == 8
    keys.add_batch(["c3"])  # already there: no new batch
    assert len(keys) == 8
    big = RecentKeys(3, [f"d{i}" for i in range(5)])  # a single batch over the limit stays whole
    assert len(big) == 5


def test_assignment_reads_the_newest_parts_only(tmp_path):
    led = RejectionLedger("127.0.0.1:1", tmp_path, recipe_version="rv")
    led.key_window = 100
    for k in range(10):  # 10 parts of 50 rows, offsets 0..499
        led.write_part(0, k * 50, (k + 1) * 50, [(k * 50 + j, _rej(k * 50 + j)) for j in range(50)])
    resume, keys, written = led.recover_partition(0)
    assert resume == 500 and written == 500
    # The newest two parts' keys: a redelivery of a recent row is still caught, an old one is let go.
    assert keys == {led.key_of(_rej(i)) for i in range(400, 500)}
    # A crash right after the newest part, before its offset record: resume from the one before.
    (tmp_path / "ledger" / "_offsets" / "p000-000000000450.json").unlink()
    assert led.recover_partition(0)[0] == 450 and led.recover_partition(0)[2] == 500
    assert led.recover_partition(1) == (None, set(), 0)
