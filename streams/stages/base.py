"""The one interface every stage implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from schemas import CuratedDocument, Reason, Rejection

Outcome = CuratedDocument | Rejection


class Stage(ABC):
    """A pipeline step. ``process_batch`` returns one outcome per input, in order.

    Stages are deterministic given their state and input order: replays and
    crash recovery rely on a document getting the same verdict twice.
    """

    name: str = "stage"

    @abstractmethod
    def process_batch(self, docs: Sequence[CuratedDocument]) -> list[Outcome]:
        ...

    def process(self, doc: CuratedDocument) -> Outcome:
        return self.process_batch([doc])[0]

    def reject(self, doc: CuratedDocument, reason: Reason, detail: str | None = None, *,
               score: float | None = None, duplicate_of: str | None = None) -> Rejection:
        return Rejection(
            id=doc.id, reason=reason.value, stage=self.name, recipe_version=doc.recipe_version,
            source=doc.source, url=doc.url, detail=detail, duplicate_of=duplicate_of, score=score,
            content_hash=doc.content_hash, n_bytes=len(doc.text.encode("utf-8")), raw_ref=doc.meta.get("raw_ref"),
        )


class ScoringStage(Stage):
    """A stage that scores each document and rejects those on the wrong side of a threshold.

    Subclasses implement ``score_batch``; the score is stored in ``doc.scores[name]``
    so that kept documents carry it into the shard metadata.
    """

    reason: Reason = Reason.LOW_QUALITY
    reject_above: bool = False  # toxicity rejects high scores; density rejects low ones

    def __init__(self, threshold: float):
        self.threshold = threshold

    @abstractmethod
    def score_batch(self, texts: Sequence[str], docs: Sequence[CuratedDocument]) -> list[float]:
        ...

    def process_batch(self, docs: Sequence[CuratedDocument]) -> list[Outcome]:
        scores = self.score_batch([d.text for d in docs], docs)
        out: list[Outcome] = []
        for doc, s in zip(docs, scores):
            s = float(s)
            bad = s > self.threshold if self.reject_above else s < self.threshold
            if bad:
                cmp = ">" if self.reject_above else "<"
                out.append(self.reject(doc, self.reason, f"{self.name}={s:.4f} {cmp} {self.threshold}", score=s))
            else:
                doc.scores[self.name] = s
                out.append(doc)
        return out


class ModelScoringStage(ScoringStage):
    """A ScoringStage around a model scorer (``score_texts``, ``reload_if_changed``,
    ``default_threshold``): scores in chunks of ``batch_size`` and, with ``auto_reload``,
    first picks up a newer model file (the trainer's exports, for instance)."""

    def __init__(self, scorer: Any, threshold: float | None, batch_size: int, auto_reload: bool):
        self.scorer = scorer
        super().__init__(scorer.default_threshold if threshold is None else float(threshold))
        self.batch_size = int(batch_size)
        self.auto_reload = auto_reload

    def reload_if_changed(self) -> bool:
        return self.scorer.reload_if_changed()

    def score_batch(self, texts: Sequence[str], docs: Sequence[CuratedDocument]) -> list[float]:
        if self.auto_reload:
            self.scorer.reload_if_changed()
        out: list[float] = []
        for i in range(0, len(texts), self.batch_size):
            out.extend(self.scorer.score_texts(texts[i : i + self.batch_size]))
        return out
