"""Chunks (spans) of IOB2 tag sequences and their precision, recall and F1, by conlleval's rules.

A tag is ``O`` or ``B-X`` / ``I-X`` with a chunk type ``X``. Read left to right within a sentence (the
sentence starts after an ``O``), token ``s`` with tag ``P-X``:

- continues the chunk of token ``s - 1`` iff ``P = I`` and token ``s - 1`` is ``B-X`` or ``I-X`` (same type);
- otherwise starts a new chunk of type ``X``: ``B-X`` always; ``I-X`` after ``O`` or after another type
  (an ill-formed sequence: conlleval counts it as a chunk, and so do we).

A chunk is ``(type, start, end)``, tokens ``start <= s < end``. A predicted chunk is correct iff a gold
chunk has the same type and both boundaries (exact match). Over a corpus, with ``correct``, ``predicted``
(found) and ``gold`` chunk counts summed over its sentences::

    precision = correct / predicted    (0 if predicted = 0)
    recall    = correct / gold         (0 if gold = 0)
    F1        = 2 precision recall / (precision + recall)   (0 if both are 0)

overall and per type (the type's own chunks on both sides). These are fractions, conlleval prints them
times 100. Token accuracy (conlleval's ``accuracy``) counts tokens whose whole tag matches.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence

OUTSIDE = "O"


@dataclasses.dataclass(frozen=True)
class Counts:
    """Chunk counts: ``correct`` (exact matches), ``predicted`` and ``gold``; the scores of the module docstring."""

    correct: int = 0
    predicted: int = 0
    gold: int = 0

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.correct / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    def scores(self) -> dict[str, float]:
        """``{"precision", "recall", "f1", "correct", "predicted", "gold"}``."""
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class ChunkScores:
    """``overall`` and ``per_type`` chunk counts (every type seen in gold or predicted), token ``accuracy``."""

    overall: Counts
    per_type: dict[str, Counts]
    accuracy: float
    tokens: int


def split_tag(tag: str) -> tuple[str, str]:
    """``("B" | "I", type)`` of ``B-X`` / ``I-X``, ``("O", "")`` of ``O``; ValueError for anything else."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    prefix, dash, kind = tag.partition("-")
    if prefix not in ("B", "I") or not dash or not kind:
        raise ValueError(f"not an IOB2 tag (O, B-X or I-X): {tag!r}")
    return prefix, kind


def chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The chunks ``(type, start, end)`` of one sentence's tags, in order (module docstring's rules)."""
    found: list[tuple[str, int, int]] = []
    start, kind = None, ""  # the open chunk
    for s, tag in enumerate(tags):
        prefix, tag_kind = split_tag(tag)
        if prefix == "I" and start is not None and tag_kind == kind:
            continue  # the open chunk goes on
        if start is not None:
            found.append((kind, start, s))
        start, kind = (None, "") if prefix == OUTSIDE else (s, tag_kind)
    if start is not None:
        found.append((kind, start, len(tags)))
    return found


def score(gold: Iterable[Sequence[str]], predicted: Iterable[Sequence[str]]) -> ChunkScores:
    """Chunk precision, recall and F1 (overall and per type) and token accuracy of ``predicted`` sentences
    against ``gold`` ones (equal numbers of sentences, equal lengths; ValueError otherwise)."""
    correct: Counter[str] = Counter()
    found: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    right_tokens = tokens = 0
    sentences = 0
    for gold_tags, predicted_tags in zip(gold, predicted, strict=True):
        if len(gold_tags) != len(predicted_tags):
            raise ValueError(f"sentence {sentences}: {len(gold_tags)} gold tags, {len(predicted_tags)} predicted")
        gold_chunks, predicted_chunks = set(chunks(gold_tags)), set(chunks(predicted_tags))
        correct.update(kind for kind, _, _ in gold_chunks & predicted_chunks)
        found.update(kind for kind, _, _ in predicted_chunks)
        expected.update(kind for kind, _, _ in gold_chunks)
        right_tokens += sum(g == p for g, p in zip(gold_tags, predicted_tags, strict=True))
        tokens += len(gold_tags)
        sentences += 1
    per_type = {kind: Counts(correct[kind], found[kind], expected[kind]) for kind in sorted(found | expected)}
    overall = Counts(sum(correct.values()), sum(found.values()), sum(expected.values()))
    return ChunkScores(overall, per_type, right_tokens / tokens if tokens else 0.0, tokens)
