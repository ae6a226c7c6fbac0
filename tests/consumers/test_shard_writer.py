import io
import json
import tarfile

import numpy as np
import pyarrow.parquet as pq

from consumers.ledger import RejectionLedger
from consumers.shard_writer import ShardWriter
from schemas import CuratedDocument, Rejection
from streams.stages.validate import content_hash


def _docs(n, start=0):
    out = []
    for i in range(start, start + n):
        d = CuratedDocument(id=f"d{i}", text=f"text {i}", source="s", content_hash=content_hash(f"text {i}"),
                            recipe_version="rv", meta={"raw_ref": f"0:{i}"})
        d.set_tokens(np.arange(i % 7 + 1), "sp-t")
        out.append((i, d))
    return out


def test_shard_and_manifest_are_written_and_recovered(tmp_path):
    w = ShardWriter("127.0.0.1:1", tmp_path, recipe_version="rv", vocab_size=1000, publish=False)
    w.write_part(2, 0, 15, _docs(5, 10))
    assert (tmp_path / "manifest" / "_offsets" / "p002-000000000000.json").exists()
    tar = tmp_path / "shards" / "p002-000000000000.tar"
    with tarfile.open(tar) as tf:
        names = sorted(tf.getnames())
        assert len(names) == 10 and not any(n.endswith(".tmp") for n in names)
        member = next(n for n in names if n.endswith(".tokens.npy"))
        arr = np.load(io.BytesIO(tf.extractfile(member).read()))
        assert arr.dtype == np.uint16  # smallest type for a 1000-id vocabulary
        meta = json.loads(tf.extractfile(member.replace(".tokens.npy", ".json")).read())
        assert meta["n_tokens"] == len(arr) and meta["recipe_version"] == "rv"
    rows = pq.read_table(tmp_path / "manifest" / "p002-000000000000.parquet").to_pylist()
    assert [r["doc_id"] for r in rows] == [f"d{i}" for i in range(10, 15)]
    resume, keys, written = w.recover_partition(2)
    assert resume == 15 and written == 5 and keys == {d.content_hash for _, d in _docs(5, 10)}
    assert w.recover_partition(1) == (None, set(), 0)


def test_same_documents_give_byte_identical_shards(tmp_path):
    a = ShardWriter("127.0.0.1:1", tmp_path / "a", recipe_version="rv", vocab_size=1000, publish=False)
    b = ShardWriter("127.0.0.1:1", tmp_path / "b", recipe_version="rv", vocab_size=1000, publish=False)
    a.write_part(0, 0, 5, _docs(5))
    b.write_part(0, 0, 5, _docs(5))
    name = "p000-000000000000.tar"
    assert (tmp_path / "a" / "shards" / name).read_bytes() == (tmp_path / "b" / "shards" / name).read_bytes()


def test_ledger_keys_by_raw_message(tmp_path):
    led = RejectionLedger("127.0.0.1:1", tmp_path, recipe_version="rv")
    r1 = Rejection(id="x", reason="empty", stage="validate", recipe_version="rv", raw_ref="0:1")
    r2 = Rejection(id="x", reason="empty", stage="validate", recipe_version="rv", raw_ref="0:9")
    led.write_part(0, 0, 2, [(0, r1), (1, r2)])
    resume, keys, rows = led.recover_partition(0)
    assert resume == 2 and rows == 2 and len(keys) == 2 and led.key_of(r1) in keys
