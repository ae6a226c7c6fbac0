"""First stage: turn a RawDocument into a CuratedDocument or a Rejection.

Checks what every later stage relies on (text present, valid, non-empty,
within the size limit) and computes the content hash that dedup and the
shard keys use: xxh3-128 over the normalized UTF-8 bytes.
"""
from __future__ import annotations

import unicodedata

import xxhash

from schemas import CuratedDocument, RawDocument, Reason, Rejection

STAGE = "validate"


def normalize(text: str) -> str:
    """NFC, whitespace runs collapsed, ends stripped: two documents that differ
    only there are the same document for exact dedup."""
    # str.split() splits on exactly the characters \s matches (str.isspace()), and in C.
    return " ".join(unicodedata.normalize("NFC", text).split())


def content_hash(text: str) -> str:
    return xxhash.xxh3_128_hexdigest(normalize(text).encode("utf-8"))


class Validator:
    """RawDocument -> CuratedDocument | Rejection; see the module docstring."""

    name = STAGE

    def __init__(self, recipe_version: str, max_bytes: int = 1_000_000, min_chars: int = 1):
        self.recipe_version = recipe_version
        self.max_bytes = max_bytes
        self.min_chars = min_chars

    def _reject(self, raw: RawDocument, reason: Reason, detail: str, n_bytes: int | None = None) -> Rejection:
        return Rejection(id=raw.id, reason=reason.value, stage=self.name, recipe_version=self.recipe_version,
                         source=raw.source, url=raw.url, detail=detail, n_bytes=n_bytes,
                         raw_ref=raw.meta.get("raw_ref"))

    def __call__(self, raw: RawDocument) -> CuratedDocument | Rejection:
        """``raw.meta["raw_ref"]``, when set by the caller, is carried on the outcome."""
        if raw.defect is not None:
            try:
                reason = Reason(raw.defect)
            except ValueError:
                reason = Reason.MALFORMED
            return self._reject(raw, reason, raw.defect_detail or raw.defect)
        try:
            data = raw.text.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates survive JSON decoding
            return self._reject(raw, Reason.INVALID_UTF8, str(exc))
        if len(data) > self.max_bytes:
            return self._reject(raw, Reason.TOO_LARGE, f"{len(data)} bytes > limit {self.max_bytes}", len(data))
        norm = normalize(raw.text)
        if len(norm) < self.min_chars:
            return self._reject(raw, Reason.EMPTY, f"{len(norm)} characters after normalization", len(data))
        return CuratedDocument(
            id=raw.id, text=raw.text, source=raw.source, url=raw.url, lang=raw.lang, licence=raw.licence,
            content_hash=xxhash.xxh3_128_hexdigest(norm.encode("utf-8")), recipe_version=self.recipe_version,
            meta=dict(raw.meta),
        )
