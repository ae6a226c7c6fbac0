"""foundry audit over a synthesized output folder and archive (no broker needed)."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from foundry.audit import audit_ids, audit_output, locate
from foundry.cli import main

TOPIC = "foundry.raw"


def _archive(root, n_per_part: dict[int, int]) -> None:
    for p, n in n_per_part.items():
        rows = [{"partition": p, "offset": o, "timestamp_ms": 0, "key": None, "value": b"{}",
                 "id": f"d{p}-{o}", "source": "web" if o % 2 else "books"} for o in range(n)]
        folder = root / "date=2026-01-01" / "source=mixed"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), folder / f"p{p:03d}-000000000000.parquet")


def _out(root, manifest_refs: list[str], ledger_refs: list[str]) -> None:
    for sub, col, refs in (("manifest", "doc_id", manifest_refs), ("ledger", "id", ledger_refs)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        # Two parts each, so a ref doubled across parts is seen as doubled.
        half = len(refs) // 2
        for k, chunk in enumerate((refs[:half], refs[half:])):
            pq.write_table(pa.table({col: [f"id-{r}" for r in chunk], "raw_ref": pa.array(chunk, pa.string())}),
                           root / sub / f"p000-{k:012d}.parquet")


def _refs(p: int, offsets, topic: bool = True) -> list[str]:
    return [f"{TOPIC}:{p}:{o}" if topic else f"{p}:{o}" for o in offsets]


def test_rows_are_located_in_the_audited_topic_and_incarnation():
    assert locate("foundry.raw:3:17", TOPIC, None) == (3, 17)
    assert locate("3:17", TOPIC, "abc") == (3, 17)  # an old ref: the audited topic
    assert locate("foundry.raw@abc:3:17", TOPIC, "abc") == (3, 17)
    assert locate("foundry.raw@old:3:17", TOPIC, "abc") == "other"  # the topic before it was recreated
    assert locate("foundry.raw@old:3:17", TOPIC, None) == (3, 17)  # an archive knows no incarnation
    assert locate("other.raw:3:17", TOPIC, None) == "other"
    assert locate("garbage", TOPIC, None) == "bad" and locate(None, TOPIC, None) == "bad"


def test_clean_output_passes_and_old_refs_count(tmp_path):
    _archive(tmp_path / "arc", {0: 50, 1: 30})
    # Partition 1 was written before refs carried the topic: they still count.
    _out(tmp_path / "out", _refs(0, range(0, 50, 2)) + _refs(1, range(15), topic=False),
         _refs(0, range(1, 50, 2)) + _refs(1, range(15, 30)))
    rep = audit_output(tmp_path / "out", archive=tmp_path / "arc")
    assert rep.ok, rep.text()
    assert rep.raw_checked == 80 and rep.manifest_rows == 40 and rep.ledger_rows == 40


def test_every_kind_of_fault_is_found_with_sources(tmp_path):
    _archive(tmp_path / "arc", {0: 100})
    sharded = list(range(0, 60)) + [5, 7]  # 5 and 7 sharded twice
    ledgered = list(range(60, 95)) + [61] + [10, 11, 12]  # 61 twice; 10-12 also sharded; 95-99 missing
    other_topic = ["another.raw:0:3"]
    _out(tmp_path / "out", _refs(0, sharded) + other_topic, _refs(0, ledgered) + _refs(0, [150]))
    rep = audit_output(tmp_path / "out", archive=tmp_path / "arc", until="0:100")
    assert not rep.ok
    assert rep.counts == {"missing": 5, "sharded_twice": 2, "ledgered_twice": 1, "sharded_and_rejected": 3,
                          "no_raw_message": 0}
    # odd offsets are "web", even "books"
    assert rep.by_source["missing"] == {"web": 3, "books": 2}  # 95, 97, 99 and 96, 98
    assert rep.by_source["sharded_twice"] == {"web": 2}
    assert any(e.endswith("id='d0-95'") for e in rep.examples["missing"])
    assert rep.outside_range == 2  # another topic's row and offset 150


def test_range_bounds_and_rows_without_raw(tmp_path):
    _archive(tmp_path / "arc", {0: 20})
    _out(tmp_path / "out", _refs(0, range(5, 20)), _refs(0, [0, 1, 2, 3, 4]))
    # From offset 5 on everything is in place; the rows before it are outside the range.
    rep = audit_output(tmp_path / "out", archive=tmp_path / "arc", start="0:5")
    assert rep.ok and rep.raw_checked == 15 and rep.outside_range == 5
    # An archive with a hole: rows that name an offset no raw message has.
    arc = tmp_path / "arc" / "date=2026-01-01" / "source=mixed" / "p000-000000000000.parquet"
    t = pq.read_table(arc)
    pq.write_table(t.filter(pa.compute.not_equal(t.column("offset"), 7)), arc)
    rep = audit_output(tmp_path / "out", archive=tmp_path / "arc")
    assert rep.counts["no_raw_message"] == 1 and rep.examples["no_raw_message"] == [f"{TOPIC}:0:7"]


def test_cli_exit_status_and_json(tmp_path):
    _archive(tmp_path / "arc", {0: 10})
    _out(tmp_path / "out", _refs(0, range(10)), [])
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", str(tmp_path / "out"), "--archive", str(tmp_path / "arc"), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["ok"] is True
    _out(tmp_path / "out2", _refs(0, range(9)), [])
    bad = runner.invoke(main, ["audit", str(tmp_path / "out2"), "--archive", str(tmp_path / "arc")])
    assert bad.exit_code == 1 and "missing" in bad.output and "FAILED" in bad.output
    nope = runner.invoke(main, ["audit", str(tmp_path / "arc"), "--archive", str(tmp_path / "arc")])
    assert nope.exit_code != 0 and "not an output folder" in nope.output


def test_id_keyed_audit_for_known_corpora(tmp_path):
    out = tmp_path / "out"
    (out / "manifest").mkdir(parents=True)
    (out / "ledger").mkdir()
    pq.write_table(pa.table({"doc_id": ["a", "b", "b"]}), out / "manifest" / "p000-000000000000.parquet")
    pq.write_table(pa.table({"id": ["c", "a", "zz"]}), out / "ledger" / "p000-000000000000.parquet")
    rep = audit_ids(out, ["a", "b", "c", "d"])
    assert rep.counts == {"missing": 1, "sharded_twice": 1, "ledgered_twice": 0, "sharded_and_rejected": 1,
                          "no_raw_message": 1}
    assert audit_ids(out, ["a", "b", "c", "d", "zz"]).counts["no_raw_message"] == 0
