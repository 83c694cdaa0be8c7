"""Word vectors and the queries people ask of them: nearest words, cosine similarity, analogies.

NumPy only (no JAX): a trained embedding matrix is copied to the host once and queried here. ``load_word2vec`` and
``save_word2vec`` read and write the table in word2vec's text and binary files (``seqjax.data.word2vec_format``).

Dimension legend: v vocabulary size, d vector size, r the number of candidate words searched (the first
``restrict_vocab`` words; words are stored in descending frequency order, so these are the most frequent), n
questions. ``u_w = v_w / ||v_w||`` is the unit vector of word w (a zero vector stays zero), and
``cos(x, w) = u_x . u_w``.

The semantics follow gensim's ``KeyedVectors`` (``most_similar``, ``most_similar_cosmul``, ``similarity``), so that
numbers are comparable with published ones:

- 3CosAdd (Mikolov et al. 2013), "a is to b as c is to ?":
  ``argmax_x cos(x, b) - cos(x, a) + cos(x, c)``, computed as the cosine of x with ``unit(u_b - u_a + u_c)``
  (the same ranking, and the score gensim's ``most_similar(positive=[b, c], negative=[a])`` reports).
- 3CosMul (Levy & Goldberg 2014, eq. 4, cosines shifted to [0, 1] by ``cos' = (1 + cos) / 2`` per their footnote 7):
  ``argmax_x cos'(x, b) cos'(x, c) / (cos'(x, a) + epsilon)``. The paper's epsilon is 1e-3, our default; gensim's
  ``most_similar_cosmul`` uses 1e-6 and, unlike ``most_similar``, ignores ``restrict_vocab`` (it searches every word).

The question words a, b, c are never answers.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence

import numpy as np

from seqjax.data import word2vec_format

METHODS = ("add", "mul")


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; rows of norm 0 stay 0 (no division by zero).

    Args:
      x: [n, d] floating array.

    Returns:
      [n, d] array of the same dtype: ``x[i] / ||x[i]||``, or ``0`` where ``||x[i]|| = 0``.
    """
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


@dataclasses.dataclass(frozen=True, eq=False)
class WordVectors:
    """An immutable table of word vectors, ``vectors[i]`` being the vector of ``words[i]``.

    Words should be in descending frequency order (as word2vec writes them): ``restrict_vocab=r`` everywhere means
    "the first r words".

    Attributes:
      words: v distinct words.
      vectors: [v, d] float32, read-only (a private copy of what was passed in).
    """

    words: tuple[str, ...]
    vectors: np.ndarray

    def __post_init__(self):
        words = tuple(self.words)
        if not all(isinstance(w, str) for w in words):
            raise TypeError("words must be strings")
        vectors = np.array(self.vectors, dtype=np.float32)  # always a copy: nobody else can change it
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise ValueError(f"vectors must have shape [{len(words)}, d] (one row per word), got {vectors.shape}")
        vectors.flags.writeable = False
        index = {}
        for i, w in enumerate(words):
            if index.setdefault(w, i) != i:
                raise ValueError(f"word {w!r} appears twice (at {index[w]} and {i})")
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def __repr__(self) -> str:
        return f"WordVectors(v={len(self)}, d={self.dim})"

    @property
    def dim(self) -> int:
        """d, the vector size."""
        return self.vectors.shape[1]

    def index(self, word: str) -> int:
        """The row of ``word``; ``KeyError`` if it is not in the vocabulary."""
        try:
            return self._index[word]
        except KeyError:
            raise KeyError(f"word {word!r} is not in the vocabulary ({len(self)} words)") from None

    def vector(self, word: str) -> np.ndarray:
        """[d] float32, the (read-only) vector of ``word``."""
        return self.vectors[self.index(word)]

    @functools.cached_property
    def unit(self) -> np.ndarray:
        """[v, d] float32 unit vectors ``u_w = v_w / ||v_w||`` (zero rows stay zero), computed once, read-only."""
        unit = unit_rows(self.vectors)
        unit.flags.writeable = False
        return unit

    def similarity(self, w1: str, w2: str) -> float:
        """``cos(w1, w2) = u_w1 . u_w2`` (0 if either vector is zero)."""
        return float(self.unit[self.index(w1)] @ self.unit[self.index(w2)])

    def _num_candidates(self, restrict_vocab: int | None) -> int:
        """r: the number of leading words searched for answers."""
        if restrict_vocab is None:
            return len(self)
        if restrict_vocab < 1:
            raise ValueError(f"restrict_vocab must be positive or None, got {restrict_vocab}")
        return min(int(restrict_vocab), len(self))

    def _top(self, scores: np.ndarray, exclude: Sequence[int], topn: int) -> list[tuple[str, float]]:
        """The ``topn`` best (word, score) among candidates ``0..r-1`` (``scores``: [r]), skipping ``exclude``."""
        scores = scores.copy()
        exclude = [i for i in exclude if i < len(scores)]
        scores[exclude] = -np.inf
        topn = min(topn, len(scores) - len(set(exclude)))
        if topn < 1:
            return []
        best = np.argpartition(-scores, topn - 1)[:topn] if topn < len(scores) else np.arange(len(scores))
        best = best[np.lexsort((best, -scores[best]))]  # by descending score, ties by index
        return [(self.words[i], float(scores[i])) for i in best]

    def most_similar(
        self,
        positive: str | Sequence[str],
        negative: str | Sequence[str] = (),
        topn: int = 10,
        restrict_vocab: int | None = None,
    ) -> list[tuple[str, float]]:
        """The words nearest to the mean of the positive words' unit vectors minus the negative ones'.

        ``q = unit(sum_{p in positive} u_p - sum_{m in negative} u_m)``; every candidate x among the first
        ``restrict_vocab`` words (all words if None) is scored ``cos(x, q) = u_x . q``; the query words themselves
        are never returned. As gensim's ``most_similar`` (its mean divides by the number of words, which the
        normalization cancels).

        Args:
          positive: one word or several.
          negative: one word or several.
          topn: how many results (fewer if fewer candidates remain).
          restrict_vocab: search only the first r words.

        Returns:
          Up to ``topn`` ``(word, cosine)`` pairs, best first.
        """
        positive = [positive] if isinstance(positive, str) else list(positive)
        negative = [negative] if isinstance(negative, str) else list(negative)
        if not positive and not negative:
            raise ValueError("most_similar needs at least one word")
        if topn < 1:
            return []
        pos = [self.index(w) for w in positive]
        neg = [self.index(w) for w in negative]
        query = self.unit[pos].sum(axis=0) - self.unit[neg].sum(axis=0)  # [d]
        query = unit_rows(query[None])[0]
        r = self._num_candidates(restrict_vocab)
        return self._top(self.unit[:r] @ query, pos + neg, topn)

    def _analogy_scores(
        self, a: np.ndarray, b: np.ndarray, c: np.ndarray, method: str, r: int, epsilon: float
    ) -> np.ndarray:
        """[n, r] float32 scores of every candidate for the questions ``a[i] : b[i] :: c[i] : ?`` (index arrays [n])."""
        candidates_t = self.unit[:r].T  # [d, r]
        if method == "add":
            query = unit_rows(self.unit[b] - self.unit[a] + self.unit[c])  # [n, d]
            return query @ candidates_t
        if method == "mul":
            # One product per distinct question word (questions share words: the Google set has ~900 distinct words
            # in 19,544 questions), then gathers: [k, r] + two [n, r] buffers, k <= 3n.
            words, inverse = np.unique(np.concatenate([a, b, c]), return_inverse=True)
            ia, ib, ic = np.split(inverse.reshape(-1), 3)
            shifted = self.unit[words] @ candidates_t  # [k, r]
            shifted += 1
            shifted *= 0.5  # cos' = (1 + cos) / 2
            scores = shifted[ib]  # [n, r]
            other = np.take(shifted, ic, axis=0)
            scores *= other
            np.take(shifted, ia, axis=0, out=other)
            other += epsilon  # > 0, as cos' >= 0
            scores /= other
            return scores
        raise ValueError(f"unknown analogy method {method!r}; known: {', '.join(METHODS)}")

    def analogy(
        self,
        a: str,
        b: str,
        c: str,
        method: str = "add",
        topn: int = 1,
        restrict_vocab: int | None = None,
        epsilon: float = 1e-3,
    ) -> list[tuple[str, float]]:
        """ "a is to b as c is to ?": the best answers x (never a, b or c) by 3CosAdd or 3CosMul.

        - ``"add"``: score ``cos(x, unit(u_b - u_a + u_c))``, ranking as ``cos(x, b) - cos(x, a) + cos(x, c)``;
          equal to gensim's ``most_similar(positive=[b, c], negative=[a])``.
        - ``"mul"``: score ``cos'(x, b) cos'(x, c) / (cos'(x, a) + epsilon)``, ``cos' = (1 + cos) / 2``; equal to
          gensim's ``most_similar_cosmul(positive=[b, c], negative=[a])`` when ``epsilon=1e-6`` and
          ``restrict_vocab=None`` (gensim's cosmul ignores the restriction).

        Args:
          a, b, c: the question words.
          method: ``"add"`` (3CosAdd) or ``"mul"`` (3CosMul).
          topn: how many answers.
          restrict_vocab: candidates are the first r words (all if None).
          epsilon: 3CosMul's guard against division by zero (Levy & Goldberg use 1e-3).

        Returns:
          Up to ``topn`` ``(word, score)`` pairs, best first.
        """
        ia, ib, ic = self.index(a), self.index(b), self.index(c)
        r = self._num_candidates(restrict_vocab)
        scores = self._analogy_scores(np.array([ia]), np.array([ib]), np.array([ic]), method, r, epsilon)[0]
        return self._top(scores, [ia, ib, ic], topn)

    def analogy_batch(
        self,
        a_idx: np.ndarray,
        b_idx: np.ndarray,
        c_idx: np.ndarray,
        method: str = "add",
        restrict_vocab: int | None = None,
        *,
        epsilon: float = 1e-3,
        candidate_key: np.ndarray | None = None,
        chunk_size: int = 1024,
    ) -> np.ndarray:
        """The best answer to each of n questions ``a : b :: c : ?``, by matrix products over chunks of questions.

        Same scores as ``analogy`` (see there and the module docstring). Questions are processed ``chunk_size`` at a
        time, so the memory used is about ``2 * chunk_size * r * 4`` bytes whatever n is.

        Args:
          a_idx, b_idx, c_idx: [n] int, word indices (any of the v words; they need not be candidates).
          method: ``"add"`` or ``"mul"``.
          restrict_vocab: candidates are the first r words (all if None).
          epsilon: 3CosMul's epsilon.
          candidate_key: [r] int or None. Candidate x is excluded from question i when ``candidate_key[x]`` is one of
            ``a_idx[i], b_idx[i], c_idx[i]``. None means ``candidate_key[x] = x``: exclude the three words
            themselves. The case-insensitive evaluator passes the index of each word's first case variant, so that
            all variants of a question word are excluded, as gensim's evaluator does.
          chunk_size: questions per matrix product.

        Returns:
          [n] int64, the index of the best candidate of each question; -1 if every candidate is excluded.
        """
        a_idx, b_idx, c_idx = (np.asarray(i, dtype=np.int64).reshape(-1) for i in (a_idx, b_idx, c_idx))
        if not len(a_idx) == len(b_idx) == len(c_idx):
            raise ValueError(f"a_idx, b_idx, c_idx differ in length: {len(a_idx)}, {len(b_idx)}, {len(c_idx)}")
        for name, idx in (("a_idx", a_idx), ("b_idx", b_idx), ("c_idx", c_idx)):
            if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
                raise IndexError(f"{name} holds indices outside [0, {len(self)})")
        if method not in METHODS:
            raise ValueError(f"unknown analogy method {method!r}; known: {', '.join(METHODS)}")
        r = self._num_candidates(restrict_vocab)
        # Candidates that are excluded by key but are not themselves the key (e.g. "Paris" when "paris" comes first).
        if candidate_key is None:
            variants = np.zeros(0, dtype=np.int64)
        else:
            candidate_key = np.asarray(candidate_key, dtype=np.int64)
            if candidate_key.shape != (r,):
                raise ValueError(f"candidate_key must have shape [{r}], got {candidate_key.shape}")
            variants = np.flatnonzero(candidate_key != np.arange(r))
        predicted = np.empty(len(a_idx), dtype=np.int64)
        for start in range(0, len(a_idx), chunk_size):
            a, b, c = (idx[start : start + chunk_size] for idx in (a_idx, b_idx, c_idx))
            scores = self._analogy_scores(a, b, c, method, r, epsilon)  # [n, r]
            rows = np.arange(len(a))
            for idx in (a, b, c):
                inside = idx < r
                scores[rows[inside], idx[inside]] = -np.inf
            if len(variants):
                keys = candidate_key[variants][None, :]  # [1, k]
                hit = (keys == a[:, None]) | (keys == b[:, None]) | (keys == c[:, None])  # [n, k]
                scores[:, variants] = np.where(hit, -np.inf, scores[:, variants])
            best = scores.argmax(axis=1)
            best[scores[rows, best] == -np.inf] = -1
            predicted[start : start + len(a)] = best
        return predicted


def load_word2vec(path: str | os.PathLike, binary: bool) -> WordVectors:
    """The ``WordVectors`` of a word2vec binary or text file, words in file order (``word2vec_format.read_word2vec``).

    Raises:
      DataError: the file is missing or malformed (one line naming the file and what was expected).
    """
    words, vectors = word2vec_format.read_word2vec(path, binary)
    return WordVectors(words, vectors)


def save_word2vec(path: str | os.PathLike, vectors: WordVectors, binary: bool) -> None:
    """Writes ``vectors`` to ``path`` in word2vec's binary or text format, atomically.

    See ``word2vec_format.write_word2vec``; words may not contain whitespace (``ValueError``): the formats could not
    delimit them.
    """
    word2vec_format.write_word2vec(path, vectors.words, vectors.vectors, binary)
