"""Licensed corpora (JSONL, JSONL.gz, Parquet, folders) and the synthetic generator."""
from __future__ import annotations

import gzip
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from streams.sources.files import FieldMap, FileSource
from streams.sources.synthetic import SyntheticConfig, SyntheticSource


def _corpus(tmp_path):
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    rows = [{"doc": {"body": f"text {i}", "link": f"http://x/{i}"}, "key": f"k{i}", "language": "en"} for i in range(5)]
    (d / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:3]) + "\n\n{not json\n[1,2]\n")
    with gzip.open(d / "sub" / "b.jsonl.gz", "wb") as fh:
        fh.write(json.dumps(rows[3]).encode() + b"\n" + b'{"doc": {"body": "\xff\xfe"}}\n' + b'{"key": "k9"}\n')
    pq.write_table(pa.Table.from_pylist([rows[4]] * 3), d / "sub" / "c.parquet", row_group_size=1)
    (d / "ignored.txt").write_text("not a corpus file")
    return d


FIELDS = FieldMap(text="doc.body", id="key", url="doc.link", lang="language")


def test_folder_of_jsonl_gz_parquet_with_field_mapping(tmp_path):
    src = FileSource([_corpus(tmp_path)], source="books", licence="CC-BY-4.0", fields=FIELDS)
    docs = list(src)
    assert [p.name for p in src.paths] == ["a.jsonl", "b.jsonl.gz", "c.parquet"]
    assert all(d.source == "books" and d.licence == "CC-BY-4.0" for d in docs)
    good = [d for d in docs if d.defect is None]
    assert [d.id for d in good[:4]] == ["k0", "k1", "k2", "k3"]
    assert good[0].text == "text 0" and good[0].url == "http://x/0" and good[0].lang == "en"
    defects = Counter(d.defect for d in docs if d.defect)
    # bad JSON, a JSON array, invalid UTF-8, a record without the text field: all travel as defects
    assert defects == {"malformed": 2, "invalid_utf8": 1, "missing_text": 1}
    assert len(docs) == 3 + 2 + 3 + 3  # blank lines are not documents


def test_file_positions_resume(tmp_path):
    src = FileSource([_corpus(tmp_path)], source="books", licence="x", fields=FIELDS)
    for key in src.inputs():
        items = list(src.read(key, None))
        for i in range(len(items) - 1):
            rest = [(it.doc.id if it.doc else it.kind) for it in src.read(key, items[i].position)]
            assert rest == [(it.doc.id if it.doc else it.kind) for it in items[i + 1:]]


def test_file_source_defaults_still_work(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"text": "hello", "id": "1"}\n{"text": "x"}\n')
    docs = list(FileSource([p]))
    assert [d.id for d in docs] == ["1", "c.jsonl:2"] and docs[0].source == "c"


def test_synthetic_reproducible_and_marked():
    cfg = SyntheticConfig(n_docs=2000, seed=7, dup_rate=0.05, near_dup_rate=0.04, boilerplate_rate=0.05,
                          mix=(0.5, 0.3, 0.2))
    a, b = list(SyntheticSource(cfg)), list(SyntheticSource(cfg))
    assert [d.text for d in a] == [d.text for d in b] and len({d.id for d in a}) == 2000
    assert all(d.meta["synthetic"] is True and d.source == "synthetic" for d in a)
    kinds = Counter(d.meta["kind"] for d in a)
    for kind, rate in (("exact_dup", 0.05 * 0.96), ("near_dup", 0.04), ("boilerplate", 0.05 * 0.8 * 0.9)):
        assert abs(kinds[kind] / 2000 - rate) < 0.02, (kind, kinds)
    assert kinds["boilerplate_only"] > 0
    by_id = {d.id: d for d in a}
    for d in a:
        if d.meta["kind"] == "exact_dup":
            assert d.text == by_id[d.meta["duplicate_of"]].text
        elif d.meta["kind"] == "near_dup":
            orig = by_id[d.meta["duplicate_of"]].text
            assert d.text != orig and _jaccard(d.text, orig) > 0.5
    langs = Counter(d.lang for d in a if d.meta["kind"] == "original")
    assert langs["en"] > langs["zh"] > langs["zh-en"] > 0
    assert [d.text for d in SyntheticSource(SyntheticConfig(n_docs=50, seed=8))] != [d.text for d in a[:50]]


def test_synthetic_defaults_unchanged_and_resumable():
    """With the new rates at their default 0, the generator gives what it always gave."""
    docs = list(SyntheticSource(SyntheticConfig(n_docs=200, seed=3)))
    assert {d.meta["kind"] for d in docs} <= {"original", "exact_dup"}
    src = SyntheticSource(SyntheticConfig(n_docs=200, seed=3))
    key = src.inputs()[0]
    assert [it.doc.id for it in src.read(key, {"index": 150})] == [d.id for d in docs[150:]]


def _jaccard(a: str, b: str, n: int = 3) -> float:
    sa = {a[i:i + n] for i in range(len(a) - n + 1)}
    sb = {b[i:i + n] for i in range(len(b) - n + 1)}
    return len(sa & sb) / max(len(sa | sb), 1)
