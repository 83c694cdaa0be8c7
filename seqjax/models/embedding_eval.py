"""Intrinsic evaluations of word vectors: word analogies and word-pair similarity, as gensim computes them.

- ``evaluate_analogies``: Mikolov et al.'s analogy questions (``questions-words.txt``: ``: section`` lines, then
  lines ``a b c d`` meaning "a is to b as c is to d"), answered by 3CosAdd or 3CosMul (see
  ``seqjax.models.word_vectors``). With ``method="add"`` the numbers equal gensim's
  ``KeyedVectors.evaluate_word_analogies`` and word2vec's ``compute-accuracy`` (which uses ``restrict_vocab=30000``).
- ``evaluate_word_pairs``: Pearson and Spearman correlation between human similarity scores (WordSim-353,
  SimLex-999: ``word1<TAB>word2<TAB>score`` lines, ``#`` comments) and the cosine similarity of the two words, equal
  to gensim's ``KeyedVectors.evaluate_word_pairs``.

Both use only the first ``restrict_vocab`` words (words are stored most frequent first); a question or pair with a
word outside them is skipped and counted. With ``case_insensitive`` (the default), words are compared upper-cased;
a word with several case variants among the first ``restrict_vocab`` words means its first (most frequent) one.
Blank lines are ignored; other malformed lines are counted and their line numbers reported, never fatal.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from seqjax.data.text import DataError, read_text
from seqjax.models.word_vectors import METHODS, WordVectors

# The first five sections of questions-words.txt are the semantic ones; sections named gram* are syntactic.
SEMANTIC_SECTIONS = ("capital-common-countries", "capital-world", "currency", "city-in-state", "family")
MAX_REPORTED_LINES = 10


def _accuracy(correct: int, total: int) -> float:
    # gensim's convention: 0.0 when nothing was answered.
    return correct / total if total else 0.0


@dataclasses.dataclass(frozen=True)
class SectionResult:
    """One ``: name`` section of an analogy file.

    Attributes:
      name: the section's name.
      correct: questions answered correctly.
      total: questions answered (all four words among the first ``restrict_vocab``), as gensim counts them.
      questions: well-formed questions in the file's section, answered or not.
    """

    name: str
    correct: int
    total: int
    questions: int

    @property
    def accuracy(self) -> float:
        """correct / total (0.0 if no question was answered, as in gensim)."""
        return _accuracy(self.correct, self.total)

    @property
    def kind(self) -> str:
        """``"semantic"`` (one of ``SEMANTIC_SECTIONS``), ``"syntactic"`` (name starts with ``gram``) or ``"other"``."""
        if self.name in SEMANTIC_SECTIONS:
            return "semantic"
        return "syntactic" if self.name.startswith("gram") else "other"


@dataclasses.dataclass(frozen=True)
class AnalogyResult:
    """The outcome of ``evaluate_analogies``.

    Attributes:
      sections: per section, in file order.
      malformed: lines that are neither a section header, a question of 4 words after a header, nor blank.
      malformed_lines: the first few of them (1-based line numbers).
      method: ``"add"`` or ``"mul"``.
      restrict_vocab: the number of words used (as given).
    """

    sections: tuple[SectionResult, ...]
    malformed: int
    malformed_lines: tuple[int, ...]
    method: str
    restrict_vocab: int | None

    def _sum(self, kind: str | None, field: str) -> int:
        return sum(getattr(s, field) for s in self.sections if kind is None or s.kind == kind)

    @property
    def correct(self) -> int:
        return self._sum(None, "correct")

    @property
    def total(self) -> int:
        """Questions answered."""
        return self._sum(None, "total")

    @property
    def questions(self) -> int:
        """Well-formed questions in the file."""
        return self._sum(None, "questions")

    @property
    def accuracy(self) -> float:
        """All sections: correct / answered (gensim's "Total accuracy")."""
        return _accuracy(self.correct, self.total)

    @property
    def semantic_accuracy(self) -> float:
        return _accuracy(self._sum("semantic", "correct"), self._sum("semantic", "total"))

    @property
    def syntactic_accuracy(self) -> float:
        return _accuracy(self._sum("syntactic", "correct"), self._sum("syntactic", "total"))

    @property
    def coverage(self) -> float:
        """Questions answered / well-formed questions in the file (gensim's 1 - OOV ratio / 100)."""
        return self.total / self.questions if self.questions else 0.0

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"analogies ({self.method}, top {self.restrict_vocab}): total {self.accuracy:.2%} "
            f"({self.correct}/{self.total}), semantic {self.semantic_accuracy:.2%}, "
            f"syntactic {self.syntactic_accuracy:.2%}, coverage {self.coverage:.2%}, malformed lines {self.malformed}"
        )


def _restricted_lookup(vectors: WordVectors, restrict_vocab: int | None, case_insensitive: bool) -> dict[str, int]:
    """Word (upper-cased if case_insensitive) -> index of its first occurrence among the first r words."""
    if restrict_vocab is not None and restrict_vocab < 1:
        raise ValueError(f"restrict_vocab must be positive or None, got {restrict_vocab}")
    r = len(vectors) if restrict_vocab is None else min(restrict_vocab, len(vectors))
    lookup = {}
    for i, word in enumerate(vectors.words[:r]):
        lookup.setdefault(word.upper() if case_insensitive else word, i)
    return lookup


def evaluate_analogies(
    vectors: WordVectors,
    path: str | os.PathLike,
    restrict_vocab: int | None = 30000,
    method: str = "add",
    case_insensitive: bool = True,
    *,
    chunk_size: int = 1024,
) -> AnalogyResult:
    """Accuracy on an analogy file, as gensim's ``evaluate_word_analogies`` (which is 3CosAdd only).

    A question ``a b c d`` is answered when all four words are among the first ``restrict_vocab`` words; its answer
    is the best candidate among those words other than a, b, c (and, with ``case_insensitive``, other than any
    case variant of them), and it is correct when that candidate is d (upper-cased, with ``case_insensitive``).

    Args:
      vectors: the word vectors, most frequent words first.
      path: the analogy file (``: section`` header lines, then ``a b c d`` lines).
      restrict_vocab: how many leading words are used, as candidates and to decide which questions are answerable
        (None: all).
      method: ``"add"`` (3CosAdd) or ``"mul"`` (3CosMul with epsilon 1e-3).
      case_insensitive: compare words upper-cased.
      chunk_size: questions per matrix product (memory ~ ``2 * chunk_size * restrict_vocab * 4`` bytes).

    Returns:
      Per-section counts, malformed lines; accuracies and coverage as properties.
    """
    if method not in METHODS:
        raise ValueError(f"unknown analogy method {method!r}; known: {', '.join(METHODS)}")
    lookup = _restricted_lookup(vectors, restrict_vocab, case_insensitive)
    names: list[str] = []
    counts: list[int] = []  # well-formed questions per section
    section_of: list[int] = []  # per answerable question
    quads: list[tuple[int, int, int, int]] = []
    malformed: list[int] = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if line.startswith(": "):  # gensim's test for a header
            names.append(line.lstrip(": ").strip())
            counts.append(0)
            continue
        words = line.split()
        if not words:
            continue
        if len(words) != 4 or not names:
            malformed.append(number)
            continue
        counts[-1] += 1
        if case_insensitive:
            words = [w.upper() for w in words]
        if all(w in lookup for w in words):
            quads.append(tuple(lookup[w] for w in words))
            section_of.append(len(names) - 1)
    correct = np.zeros(len(names), dtype=np.int64)
    answered = np.zeros(len(names), dtype=np.int64)
    if quads:
        q = np.array(quads, dtype=np.int64)  # [n, 4]
        r = len(vectors) if restrict_vocab is None else min(restrict_vocab, len(vectors))
        # key[x]: the index that stands for candidate x (its first case variant), so that a candidate is excluded
        # when it is any variant of a question word and right when it is any variant of the expected word.
        key = np.array([lookup[w.upper() if case_insensitive else w] for w in vectors.words[:r]], dtype=np.int64)
        predicted = vectors.analogy_batch(
            q[:, 0], q[:, 1], q[:, 2], method, r, candidate_key=key if case_insensitive else None, chunk_size=chunk_size
        )
        hit = (predicted >= 0) & (key[np.maximum(predicted, 0)] == q[:, 3])
        sections = np.array(section_of)
        np.add.at(answered, sections, 1)
        np.add.at(correct, sections, hit.astype(np.int64))
    return AnalogyResult(
        sections=tuple(
            SectionResult(name, int(c), int(t), n)
            for name, c, t, n in zip(names, correct, answered, counts, strict=True)
        ),
        malformed=len(malformed),
        malformed_lines=tuple(malformed[:MAX_REPORTED_LINES]),
        method=method,
        restrict_vocab=restrict_vocab,
    )


def rank_average(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of the values of ``x`` ([n]), tied values getting the mean of their ranks (scipy's "average").

    Returns:
      [n] float64.
    """
    x = np.asarray(x).reshape(-1)
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]  # [n] first element of each run of equal values
    group = np.cumsum(starts) - 1  # [n] run of each sorted element
    bounds = np.r_[np.flatnonzero(starts), len(x)]  # [g + 1]
    mean_rank = (bounds[:-1] + bounds[1:] + 1) / 2  # positions s..e-1 have ranks s+1..e
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r of two [n] arrays: ``sum(dx dy) / sqrt(sum(dx^2) sum(dy^2))``, ``dx = x - mean(x)``.

    NaN when n < 2 or either array is constant (without a warning).
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.shape} vs {y.shape}")
    if len(x) < 2:
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    denominator = np.sqrt((dx @ dx) * (dy @ dy))
    if not denominator > 0:
        return float("nan")
    return float(np.clip((dx @ dy) / denominator, -1.0, 1.0))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: Pearson's r of the average ranks (``rank_average``) of x and y."""
    return pearson(rank_average(x), rank_average(y))


@dataclasses.dataclass(frozen=True)
class SimilarityResult:
    """The outcome of ``evaluate_word_pairs``.

    Attributes:
      pearson: Pearson's r between human scores and cosine similarities of the pairs used (NaN if < 2 pairs).
      spearman: Spearman's rho, likewise.
      oov_ratio: fraction (not percent, unlike gensim) of well-formed pairs skipped because a word is not among the
        first ``restrict_vocab`` words: ``(pairs_total - pairs_used) / pairs_total``.
      pairs_used: pairs with both words known.
      pairs_total: well-formed pairs in the file.
      malformed: non-comment, non-blank lines that are not ``word1<delim>word2<delim>score`` with a finite score.
      malformed_lines: the first few of them (1-based line numbers).
    """

    pearson: float
    spearman: float
    oov_ratio: float
    pairs_used: int
    pairs_total: int
    malformed: int
    malformed_lines: tuple[int, ...]

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"word pairs: spearman {self.spearman:.4f}, pearson {self.pearson:.4f}, "
            f"{self.pairs_used}/{self.pairs_total} pairs (oov {self.oov_ratio:.1%}), malformed lines {self.malformed}"
        )


def _is_finite_float(text: str) -> bool:
    try:
        return bool(np.isfinite(float(text)))
    except ValueError:
        return False


def evaluate_word_pairs(
    vectors: WordVectors,
    path: str | os.PathLike,
    restrict_vocab: int | None = 300000,
    case_insensitive: bool = True,
    delimiter: str = "\t",
) -> SimilarityResult:
    """Correlation between human similarity scores and cosine similarities, as gensim's ``evaluate_word_pairs``.

    Lines starting with ``#`` are comments; other lines are ``word1<delim>word2<delim>score``. A pair with a word
    outside the first ``restrict_vocab`` words is skipped (counted in ``oov_ratio``). No p-values (they would need
    scipy; with hundreds of pairs they are ~0 anyway).

    Args:
      vectors: the word vectors, most frequent words first.
      path: the pairs file.
      restrict_vocab: how many leading words are known (None: all).
      case_insensitive: compare words upper-cased.
      delimiter: the field separator.

    Returns:
      The correlations and counts.
    """
    lookup = _restricted_lookup(vectors, restrict_vocab, case_insensitive)
    first, second, human = [], [], []
    total = 0
    malformed: list[int] = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if line.startswith("#") or not line.strip():
            continue
        fields = [f.strip() for f in line.split(delimiter)]
        if len(fields) != 3 or not (fields[0] and fields[1]) or not _is_finite_float(fields[2]):
            malformed.append(number)
            continue
        a, b, score = fields[0], fields[1], float(fields[2])
        total += 1
        if case_insensitive:
            a, b = a.upper(), b.upper()
        if a in lookup and b in lookup:
            first.append(lookup[a])
            second.append(lookup[b])
            human.append(score)
    unit = vectors.unit
    model = np.einsum("nd,nd->n", unit[first].astype(np.float64), unit[second].astype(np.float64))  # [n] cosines
    return SimilarityResult(
        pearson=pearson(human, model),
        spearman=spearman(human, model),
        oov_ratio=(total - len(human)) / total if total else 0.0,
        pairs_used=len(human),
        pairs_total=total,
        malformed=len(malformed),
        malformed_lines=tuple(malformed[:MAX_REPORTED_LINES]),
    )


ANALOGIES = "questions-words.txt"
PAIRS = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}


def check_dir(eval_dir: str | Path) -> None:
    """``DataError`` (one line) unless ``evaluate_dir`` can read ``eval_dir``: a missing folder is fine (nothing to
    evaluate), a path that is not a folder, an unreadable folder or an evaluation file that cannot be read are not.
    Reads every evaluation file present."""
    eval_dir = Path(eval_dir)
    try:
        if not eval_dir.exists():
            return
        if not eval_dir.is_dir():
            raise DataError(f"{eval_dir}: not a directory")
        if not os.access(eval_dir, os.R_OK | os.X_OK):
            raise DataError(f"{eval_dir}: not readable")
        for path in [eval_dir / ANALOGIES, *(eval_dir / name for name in PAIRS.values())]:
            if path.is_file():
                read_text(path)
    except OSError as e:
        raise DataError(f"{e.filename or eval_dir}: {e.strerror or e}") from None


def evaluate_dir(vectors: WordVectors, eval_dir: str | Path, restrict_vocab: int) -> dict:
    """Analogy accuracy (3CosAdd and 3CosMul) and WordSim-353 / SimLex-999 correlations, for the files present."""
    eval_dir = Path(eval_dir)
    results = {}
    if (eval_dir / ANALOGIES).is_file():
        for method in ("add", "mul"):
            r = evaluate_analogies(vectors, eval_dir / ANALOGIES, restrict_vocab, method=method)
            results[f"analogy_{method}"] = {
                "accuracy": r.accuracy, "semantic": r.semantic_accuracy, "syntactic": r.syntactic_accuracy,
                "coverage": r.coverage, "answered": r.total, "questions": r.questions, "malformed": r.malformed,
                "sections": {s.name: [s.correct, s.total] for s in r.sections},
            }  # fmt: skip
    for name, filename in PAIRS.items():
        if (eval_dir / filename).is_file():
            r = evaluate_word_pairs(vectors, eval_dir / filename)
            results[name] = {
                "spearman": r.spearman, "pearson": r.pearson, "oov_ratio": r.oov_ratio,
                "pairs_used": r.pairs_used, "malformed": r.malformed,
            }  # fmt: skip
    return results


def describe(evaluation: dict) -> str:
    """One line per evaluation, for the console."""
    lines = []
    for method in ("add", "mul"):
        if (a := evaluation.get(f"analogy_{method}")) is not None:
            lines.append(
                f"analogy 3Cos{method.capitalize()}: {a['accuracy']:.2%} ({a['answered']}/{a['questions']} answered;"
                f" semantic {a['semantic']:.2%}, syntactic {a['syntactic']:.2%})"
            )
    for name in PAIRS:
        if (p := evaluation.get(name)) is not None:
            lines.append(f"{name}: Spearman {p['spearman']:.3f}, Pearson {p['pearson']:.3f}, OOV {p['oov_ratio']:.1%}")
    return "\n".join(lines)
