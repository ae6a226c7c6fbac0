"""The pruning report: what budget pruning removed, by source, language and length."""
from __future__ import annotations

from schemas import Rejection
from streams.budget.report import byte_class, detail_fields, items_from, removal_report


def test_removal_report_by_source_language_and_length():
    kept = [{"source": "web", "lang": "en", "n_bytes": 2000}] * 30
    rej = [Rejection(id=f"r{i}", reason="budget_pruned", stage="budget_prune", recipe_version="r", source="spam",
                     n_bytes=300, detail="why=over_budget keep=0.1000 u=0.5 lang=de len=1 key=spam", budget_version=3)
           for i in range(40)]
    rej.append(Rejection(id="d", reason="duplicate", stage="dedup", recipe_version="r", source="web", n_bytes=5))
    rep = removal_report(items_from(kept, rej), min_docs=20)
    by_source = {r["group"]: r for r in rep["source"]}
    assert by_source["spam"]["pruned_docs"] == 40 and by_source["spam"]["starved"]
    assert by_source["web"]["pruned_docs"] == 0 and by_source["web"]["docs"] == 30  # the duplicate is not budget's
    assert {r["group"] for r in rep["lang"]} == {"en", "de"}
    assert {r["group"] for r in rep["length"]} == {byte_class(2000), byte_class(300)}
    assert detail_fields("why=x keep=0.5 lang=zh")["lang"] == "zh"


def test_budget_report_command_reads_the_manifest_and_the_ledger(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from foundry.cli_budget import budget_report

    (tmp_path / "manifest").mkdir()
    (tmp_path / "ledger").mkdir()
    pq.write_table(pa.table({"doc_id": ["a", "b"], "source": ["web", "web"], "lang": ["en", "zh"],
                             "n_bytes": [1000, 100]}), tmp_path / "manifest" / "p0.parquet")
    pq.write_table(pa.table({"id": ["c"], "reason": ["budget_pruned"], "source": ["spam"], "n_bytes": [300],
                             "detail": ["why=over_budget keep=0.1000 u=0.9 lang=en len=1 key=spam"],
                             "budget_version": [4]}), tmp_path / "ledger" / "p0.parquet")
    res = CliRunner().invoke(budget_report, [str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "pruned by source" in res.output and "spam" in res.output and "100.0%" in res.output
