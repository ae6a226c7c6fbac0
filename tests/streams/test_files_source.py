import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq

from streams.sources.files import FieldMap, FileSource


def test_jsonl_gz_defects_are_documents_not_drops(tmp_path):
    p = tmp_path / "c.jsonl.gz"
    with gzip.open(p, "wb") as fh:
        fh.write(b'{"id": "a", "text": "ok"}\n\n{broken\n{"id": "b"}\n"just a string"\n{"text": "\xff"}\n')
    docs = list(FileSource([p], source="src", licence="CC-BY"))
    assert [(d.id, d.defect) for d in docs] == [
        ("a", None), ("c.jsonl.gz:3", "malformed"), ("b", "missing_text"),
        ("c.jsonl.gz:5", "malformed"), ("c.jsonl.gz:6", "invalid_utf8")]
    assert all(d.source == "src" and d.licence == "CC-BY" for d in docs)


def test_parquet_and_folders_with_field_map(tmp_path):
    (tmp_path / "sub").mkdir()
    pq.write_table(pa.table({"body": ["x", "y"], "key": ["k1", "k2"]}), tmp_path / "sub" / "a.parquet")
    (tmp_path / "b.jsonl").write_text(json.dumps({"body": "z"}) + "\n")
    docs = list(FileSource([tmp_path], fields=FieldMap(text="body", id="key")))
    assert sorted((d.id, d.text) for d in docs) == [("b.jsonl:1", "z"), ("k1", "x"), ("k2", "y")]
