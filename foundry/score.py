"""``foundry score``: run curation operators over a JSONL file, without Kafka.

    foundry score docs.jsonl --operators quality_rules,language,near_dedup --out scored.jsonl
    foundry score docs.jsonl.gz -o quality_rules -s quality_rules.max_digit_ratio=0.3

Each input line is a JSON object with a ``text`` field (and optionally ``id``,
``lang``, ``source``, ``url``). Every operator sees every record, as the
record came in (a rejection by one operator hides nothing from the others),
so the output shows each operator's verdict side by side and thresholds can
be tuned. Each output line is the input record plus:

``scores``     ``{name: value}``: what each operator measured. An operator's
               score named like the operator is ``name``; other values are
               ``operator.value`` (``quality_rules.digit_ratio``). For a
               rejection, the rejection's score is under the operator's name,
               plus whatever the stage's optional ``explain(doc) -> dict``
               reports (``quality_rules`` gives every rule's value).
``decisions``  ``{operator: "keep" | "reject:<reason>"}``
``details``    ``{operator: detail}`` for rejections
``changes``    ``{operator: {...}}`` what an operator changed: ``lang``, ``meta``
               entries, and for a changed text its length before and after
               (the new text itself with ``--show-text``).

A record without an ``id`` gets ``line-N`` (its line number). A record
without a usable text gets ``"error"`` instead. Stateful operators
(``near_dedup``) see the records in file order, like one partition does.
A summary (per operator: kept, rejected by reason, docs/s) goes to stderr.
"""
from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import click

from schemas import CuratedDocument, Rejection

RECIPE_VERSION = "foundry-score"


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_settings(settings: tuple[str, ...], operators: list[str]) -> dict[str, dict[str, Any]]:
    """``("op.param=value", ...)`` -> ``{op: {param: value}}``; values are JSON when they parse."""
    out: dict[str, dict[str, Any]] = {op: {} for op in operators}
    for item in settings:
        key, sep, raw = item.partition("=")
        op, dot, param = key.partition(".")
        if not sep or not dot or not op or not param:
            raise click.BadParameter(f"{item!r}: expected OPERATOR.PARAM=VALUE", param_hint="--set")
        if op not in out:
            raise click.BadParameter(f"{item!r}: operator {op!r} is not in --operators", param_hint="--set")
        out[op][param] = _parse_value(raw)
    return out


def _open_in(path: str) -> io.TextIOBase:
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _records(fh: io.TextIOBase) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    for n, line in enumerate(fh, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            yield n, None, f"line {n}: not JSON: {exc}"
            continue
        if not isinstance(rec, dict):
            yield n, None, f"line {n}: not a JSON object"
        elif not isinstance(rec.get("text"), str):
            yield n, rec, "no text field"
        else:
            yield n, rec, None


def to_document(rec: dict[str, Any], line_no: int, source: str) -> CuratedDocument:
    text = rec["text"]
    lang = rec.get("lang")
    return CuratedDocument(
        id=str(rec.get("id", f"line-{line_no}")),
        text=text,
        source=str(rec.get("source") or source),
        content_hash=hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest(),
        recipe_version=RECIPE_VERSION,
        url=rec.get("url") if isinstance(rec.get("url"), str) else None,
        lang=lang if isinstance(lang, str) else None,
    )


def _score_key(op: str, key: str) -> str:
    return op if key == op else f"{op}.{key}"


def apply_outcome(out: dict[str, Any], op: str, before: CuratedDocument, outcome: Any, *, show_text: bool,
                  stage: Any = None) -> str:
    """Add one operator's outcome for one record to the output record; return the decision."""
    if isinstance(outcome, Rejection):
        decision = f"reject:{outcome.reason}"
        if outcome.score is not None:
            out["scores"][op] = outcome.score
        explain = getattr(stage, "explain", None)
        if callable(explain):  # all the values behind the verdict, for threshold tuning
            for key, value in explain(copy.deepcopy(before)).items():
                out["scores"][_score_key(op, key)] = value
        if outcome.detail:
            out["details"][op] = outcome.detail
        if outcome.duplicate_of:
            out["details"][f"{op}.duplicate_of"] = outcome.duplicate_of
    elif isinstance(outcome, CuratedDocument):
        decision = "keep"
        for key, value in outcome.scores.items():
            if before.scores.get(key) != value:
                out["scores"][_score_key(op, key)] = value
        change: dict[str, Any] = {}
        if outcome.lang != before.lang:
            change["lang"] = outcome.lang
        meta = {k: v for k, v in outcome.meta.items() if before.meta.get(k) != v}
        if meta:
            change["meta"] = meta
        if outcome.text != before.text:
            change["text_chars"] = [len(before.text), len(outcome.text)]
            if show_text:
                change["text"] = outcome.text
        if change:
            out["changes"][op] = change
    else:
        raise TypeError(f"operator {op!r} returned {type(outcome).__name__}")
    out["decisions"][op] = decision
    return decision


@click.command("score")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--operators", "-o", "operators", default=None,
              help="comma-separated operator names (default: every registered operator that needs no "
                   "worker context, so not budget_prune, which needs a broker or a budgets_file)")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              show_default=True, help="output JSONL ('-' for stdout)")
@click.option("--set", "-s", "settings", multiple=True, metavar="OP.PARAM=VALUE",
              help="operator parameter, repeatable; VALUE is JSON when it parses (0.3, true, [\"en\",\"zh\"])")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(1))
@click.option("--show-text", is_flag=True, help="include the new text when an operator changed it")
@click.option("--quiet", "-q", is_flag=True, help="no summary on stderr")
def score(file: str, operators: str | None, out_path: str, settings: tuple[str, ...], batch_size: int,
          show_text: bool, quiet: bool) -> None:
    """Score the records of FILE (JSONL, optionally .gz) with curation operators."""
    from streams.stages.registry import build_stage, default_operator_names, operator_names

    names = [n.strip() for n in operators.split(",") if n.strip()] if operators else default_operator_names()
    if not names:
        raise click.UsageError("no operators given and none registered")
    known = set(operator_names())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise click.BadParameter(f"unknown operator(s) {unknown}; known: {sorted(known)}", param_hint="--operators")
    params = parse_settings(settings, names)
    stages = {}
    for n in names:
        try:
            stages[n] = build_stage({"op": n, **params[n]})
        except Exception as exc:  # noqa: BLE001 - a model file missing, bad parameters, ...
            # Leaving an operator out would look like a result without it: stop instead.
            if operators:
                raise click.BadParameter(f"{n}: {exc}", param_hint="--operators/--set") from None
            raise click.ClickException(
                f"operator {n!r} of the default set cannot be built: {exc} "
                "(a broken install? name the operators to run with --operators)") from None

    stats = {n: Counter() for n in names}
    seconds = Counter()
    n_records = n_errors = 0
    source = "stdin" if file == "-" else file

    fin = _open_in(file)
    fout = sys.stdout if out_path == "-" else open(out_path, "w", encoding="utf-8")
    try:
        batch: list[tuple[int, dict[str, Any] | None, str | None]] = []

        def flush() -> None:
            nonlocal n_records, n_errors
            good = [(i, rec) for i, (_, rec, err) in enumerate(batch) if err is None]
            docs = [to_document(rec, batch[i][0], source) for i, rec in good]
            outs: list[dict[str, Any] | None] = [None] * len(batch)
            for (i, rec), d in zip(good, docs):
                outs[i] = {"id": d.id, **rec, "scores": {}, "decisions": {}, "details": {}, "changes": {}}
            for n in names:
                copies = [copy.deepcopy(d) for d in docs]
                t0 = time.perf_counter()
                results = stages[n].process_batch(copies)
                seconds[n] += time.perf_counter() - t0
                if len(results) != len(copies):
                    raise click.ClickException(
                        f"operator {n!r} returned {len(results)} outcomes for {len(copies)} docs")
                for (i, _), before, outcome in zip(good, docs, results):
                    stats[n][apply_outcome(outs[i], n, before, outcome, show_text=show_text, stage=stages[n])] += 1
            for i, (line_no, rec, err) in enumerate(batch):
                if err is not None:
                    n_errors += 1
                    row = {**(rec or {}), "error": err}
                else:
                    row = outs[i]
                    for key in ("details", "changes"):
                        if not row[key]:
                            del row[key]
                fout.write(json.dumps(row, ensure_ascii=False) + "\n")
                n_records += 1
            batch.clear()

        for item in _records(fin):
            batch.append(item)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
    finally:
        if fin is not sys.stdin:
            fin.close()
        if fout is not sys.stdout:
            fout.close()
        else:
            fout.flush()

    if not quiet:
        click.echo(f"{n_records} records ({n_errors} without usable text)", err=True)
        for n in names:
            kept = stats[n]["keep"]
            rejected = {k.split(":", 1)[1]: v for k, v in stats[n].items() if k != "keep"}
            rate = (kept + sum(rejected.values())) / seconds[n] if seconds[n] else 0.0
            click.echo(f"  {n}: keep {kept}, reject {sum(rejected.values())} {rejected or ''} ({rate:.0f} docs/s)",
                       err=True)


main = score

if __name__ == "__main__":
    score()
