"""JSONL, JSONL.gz and Parquet corpora as RawDocuments.

Reads line by line (or Parquet batch by batch), so memory stays bounded
whatever the file size. A line that cannot be read still yields a
RawDocument, with ``defect`` set, so that the pipeline records it in the
ledger instead of dropping it.

``FileSource`` is also a ResumableSource (``inputs``/``read``/``size``) for
``streams.sources.runner``: positions are ``{"line": n, "byte": offset}`` in
the (decompressed) JSONL stream and ``{"row": n}`` in a Parquet file. Field
names in the FieldMap may be dotted paths into nested objects
(``metadata.url``).
"""
from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas import RawDocument, Reason

from .runner import Item

SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".parquet")
# A record must fit the topics' 64 MiB message limit (schemas/topics.py) with its envelope;
# a longer line travels as a too_large defect without its text, and is never held whole.
MAX_LINE_BYTES = 48 << 20


def _read_line(fh) -> tuple[bytes, int]:
    """(the line, or its first MAX_LINE_BYTES + 1 bytes if longer; its full length)."""
    line = fh.readline(MAX_LINE_BYTES + 1)
    length = len(line)
    if length > MAX_LINE_BYTES and not line.endswith(b"\n"):
        while True:  # skip the rest of the line in bounded chunks
            rest = fh.readline(1 << 20)
            length += len(rest)
            if not rest or rest.endswith(b"\n"):
                break
    return line, length


@dataclass(frozen=True)
class FieldMap:
    text: str = "text"
    id: str = "id"
    url: str = "url"
    lang: str = "lang"


def expand_paths(paths: list[str | Path], suffixes: tuple[str, ...] = SUFFIXES, kind: str = "corpus") -> list[Path]:
    """Files as given, folders expanded to their files with ``suffixes`` in sorted order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(suffixes)))
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such {kind} file or folder: {p}")
    return out


class LocalFileInputs:
    """The resumable-source inputs of a source reading local files (``self.paths``):
    one input per file, named by its absolute path, sized by the file."""

    paths: list[Path]

    def inputs(self) -> list[str]:
        return [os.fspath(p.resolve()) for p in self.paths]

    def size(self, key: str) -> int | None:
        return os.path.getsize(key)


class FileSource(LocalFileInputs):
    """Yields RawDocuments from corpus files; ids default to ``{file name}:{line}``."""

    def __init__(self, paths: list[str | Path], *, source: str | None = None, licence: str | None = None,
                 fields: FieldMap = FieldMap()):
        self.paths = expand_paths(paths)
        self.source = source
        self.licence = licence
        self.fields = fields

    @property
    def name(self) -> str:
        return self.source or "files"

    def __iter__(self) -> Iterator[RawDocument]:
        for path in self.paths:
            for item in self.read(os.fspath(path), None):
                if item.doc is not None:
                    yield item.doc

    # -- ResumableSource (inputs and size: LocalFileInputs)
    def read(self, key: str, position: Any = None) -> Iterator[Item]:
        path = Path(key)
        if path.name.endswith(".parquet"):
            yield from self._parquet(path, int((position or {}).get("row", 0)))
        else:
            yield from self._jsonl(path, position or {})

    def _source(self, path: Path) -> str:
        return _utf8_safe(self.source or path.name.split(".")[0])  # a file name may hold undecodable bytes

    def _jsonl(self, path: Path, position: dict) -> Iterator[Item]:
        opener = gzip.open if path.name.endswith(".gz") else open
        lineno, offset = int(position.get("line", 0)), int(position.get("byte", 0))
        total = os.path.getsize(path)
        if position.get("damaged"):
            return  # read before as far as it can be read
        with opener(path, "rb") as fh:
            if offset:
                fh.seek(offset)  # gzip: decompresses up to there, still one pass and bounded memory
            raw_fh = getattr(fh, "fileobj", None)
            last_raw = raw_fh.tell() if raw_fh is not None else offset
            while True:
                try:
                    line, length = _read_line(fh)
                except (EOFError, OSError) as exc:  # a truncated or damaged gzip stream
                    lineno += 1
                    doc = self._defect(path, f"{path.name}:{lineno}", Reason.CORRUPT_RECORD,
                                       f"the file cannot be read past line {lineno - 1}: {exc}", None)
                    yield Item(doc, {"line": lineno, "byte": offset, "damaged": True}, n_bytes=0)
                    return
                if not length:
                    break
                lineno += 1
                offset += length
                raw_now = raw_fh.tell() if raw_fh is not None else offset
                n_bytes, last_raw = max(0, min(raw_now, total) - last_raw), raw_now
                pos = {"line": lineno, "byte": offset}
                if not line.strip():
                    yield Item(None, pos, kind="blank_line", n_bytes=n_bytes)
                    continue  # blank lines separate nothing; they are not documents
                if length > MAX_LINE_BYTES:
                    doc = self._defect(path, f"{path.name}:{lineno}", Reason.TOO_LARGE,
                                       f"line of {length} bytes > {MAX_LINE_BYTES} (the message limit)", line)
                else:
                    doc = self._line_doc(path, line, f"{path.name}:{lineno}")
                yield Item(doc, pos, n_bytes=n_bytes)

    def _line_doc(self, path: Path, line: bytes, fallback_id: str) -> RawDocument:
        try:
            obj = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            return self._defect(path, fallback_id, Reason.INVALID_UTF8, str(exc), line)
        except ValueError as exc:
            return self._defect(path, fallback_id, Reason.MALFORMED, f"invalid JSON: {exc}", line)
        except RecursionError:
            return self._defect(path, fallback_id, Reason.MALFORMED, "JSON nested too deeply", line)
        return self._from_obj(path, obj, fallback_id)

    def _parquet(self, path: Path, start_row: int) -> Iterator[Item]:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        groups, row = [], 0
        for i in range(pf.metadata.num_row_groups):  # whole row groups before the resume point are not read
            n = pf.metadata.row_group(i).num_rows
            if row + n <= start_row:
                row += n
            else:
                groups.append(i)
        per_row = os.path.getsize(path) / max(pf.metadata.num_rows, 1)
        if not groups:
            return
        for batch in pf.iter_batches(batch_size=1024, row_groups=groups):
            for obj in batch.to_pylist():
                row += 1
                if row <= start_row:
                    continue
                yield Item(self._from_obj(path, obj, f"{path.name}:{row}"), {"row": row}, n_bytes=int(per_row))

    def _from_obj(self, path: Path, obj: object, fallback_id: str) -> RawDocument:
        if not isinstance(obj, dict):
            return self._defect(path, fallback_id, Reason.MALFORMED,
                                f"expected a JSON object, got {type(obj).__name__}", None)
        f = self.fields
        raw_id = _get(obj, f.id)
        doc_id = _utf8_safe(str(raw_id) if raw_id not in (None, "") else fallback_id)
        text = _get(obj, f.text)
        if text is None:
            return self._defect(path, doc_id, Reason.MISSING_TEXT, f"no {f.text!r} field", None)
        if not isinstance(text, str):
            return self._defect(path, doc_id, Reason.MALFORMED,
                                f"{f.text!r} is {type(text).__name__}, not a string", None)
        if _utf8_safe(text) is not text:
            # JSON's \ud800 escapes decode to lone surrogates, which no UTF-8 message can carry.
            return self._defect(path, doc_id, Reason.INVALID_UTF8, f"{f.text!r} holds a lone surrogate", None)
        url, lang = _get(obj, f.url), _get(obj, f.lang)
        url = url if isinstance(url, str) and _utf8_safe(url) is url else None
        lang = lang if isinstance(lang, str) and _utf8_safe(lang) is lang else None
        meta = {"file": _utf8_safe(path.name)}
        return RawDocument(id=doc_id, text=text, source=self._source(path), url=url, lang=lang,
                           licence=self.licence, meta=meta)

    def _defect(self, path: Path, doc_id: str, reason: Reason, detail: str, raw: bytes | None) -> RawDocument:
        meta = {"file": _utf8_safe(path.name)}
        if raw is not None:
            meta["excerpt"] = raw[:200].decode("utf-8", errors="backslashreplace")
        return RawDocument(id=_utf8_safe(doc_id), text="", source=self._source(path), licence=self.licence,
                           defect=reason.value, defect_detail=detail, meta=meta)


def _utf8_safe(value: str) -> str:
    """``value`` itself when it encodes as UTF-8, else a copy with lone surrogates escaped."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _get(obj: dict, path: str) -> Any:
    """``obj[path]``, or a dotted path into nested objects (``metadata.url``)."""
    if path in obj or "." not in path:
        return obj.get(path)
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur
