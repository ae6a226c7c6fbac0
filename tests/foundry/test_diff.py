import json

from click.testing import CliRunner

from consumers.ledger import RejectionLedger
from consumers.shard_writer import ShardWriter
from foundry.cli import main
from foundry.diff import diff_outputs
from schemas import CuratedDocument, Rejection
from streams.stages.validate import content_hash


def _out(tmp, name, kept, dropped):
    out = tmp / name
    w = ShardWriter("127.0.0.1:1", out, recipe_version=name, vocab_size=100, publish=False)
    docs = []
    for i in kept:
        d = CuratedDocument(id=f"d{i}", text=f"t{i}", source="web" if i % 2 else "books",
                            content_hash=content_hash(f"t{i}"), recipe_version=name, lang="en")
        d.set_tokens(list(range(i + 1)), "sp")
        docs.append((i, d))
    w.write_part(0, 0, 100, docs)
    led = RejectionLedger("127.0.0.1:1", out, recipe_version=name)
    led.write_part(0, 0, 100, [(i, Rejection(id=f"d{i}", reason=r, stage="s", recipe_version=name, source="web",
                                             raw_ref=f"0:{i}")) for i, r in dropped])
    return out


def test_diff_reports_moves_and_breakdowns(tmp_path):
    a = _out(tmp_path, "a", kept=[1, 2, 3], dropped=[(4, "toxic")])
    b = _out(tmp_path, "b", kept=[1, 4], dropped=[(2, "low_density"), (3, "duplicate")])
    d = diff_outputs(a, b)
    assert d["kept_docs"] == {"a": 3, "b": 2}
    assert d["kept_tokens"] == {"a": 2 + 3 + 4, "b": 2 + 5}
    assert d["moved"]["kept_in_a_dropped_in_b"] == 2 and d["moved"]["dropped_in_a_kept_in_b"] == 1
    assert {"id": "d2", "reason_in_b": "low_density"} in d["moved"]["sample_kept_to_dropped"]
    assert d["dropped_by_reason"]["b"] == {"duplicate": 1, "low_density": 1}
    assert d["kept_by_source"]["a"] == {"books": 1, "web": 2}
    res = CliRunner().invoke(main, ["diff", str(a), str(b)])
    assert res.exit_code == 0 and json.loads(res.output)["moved"]["dropped_in_a_kept_in_b"] == 1
    bad = CliRunner().invoke(main, ["diff", str(a), str(tmp_path / "nope")])
    assert bad.exit_code != 0 and "not an output folder" in bad.output
