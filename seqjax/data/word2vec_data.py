"""word2vec's data pipeline, as word2vec.c and gensim define it, vectorized with NumPy on the host.

A corpus is a text file with one sentence per line and words separated by whitespace (gensim's
``LineSentence``). The steps, once per corpus and then once per epoch:

1. ``build_vocab``: count words; keep those with count >= ``min_count`` and at most the
   ``max_vocab`` most frequent; order by count, most frequent first (ties by first appearance).
2. ``encode``: word ids of the kept words, OOV words dropped, with each word's sentence number.
3. ``subsample`` (each epoch): keep word w with probability (Mikolov et al. 2013b, as word2vec.c)
   ``p(w) = min(1, (sqrt(c_w / (s N)) + 1) * s N / c_w)``, with c_w its count, N the total count of
   the vocabulary's words and s = ``sample``.
4. ``reduced_windows`` (each epoch): every position draws its window uniformly from 1..``window``
   (word2vec.c's ``b = rand() % window``, window - b), so near words are seen more often.
5. ``skipgram_pairs`` / ``cbow_examples``: the training examples inside those windows, never across
   a sentence boundary, in corpus order (the learning rate decays along it).

Negative samples come from ``noise_distribution``: ``P(w) ∝ c_w ** exponent`` (0.75 in the paper).

Errors are ``DataError`` with one line naming the file and what was expected.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqjax.data.text import DataError


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Words ordered by count (most frequent first); ``counts[i]`` is the count of ``words[i]``."""

    words: tuple[str, ...]
    counts: np.ndarray  # [V] int64

    def __post_init__(self):
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self._index

    def id(self, word: str) -> int:
        return self._index[word]

    def ids(self, words: Sequence[str]) -> np.ndarray:
        """Ids of the words that are in the vocabulary (others dropped), int32 [<= len(words)]."""
        index = self._index
        return np.array([index[w] for w in words if w in index], dtype=np.int32)


@dataclasses.dataclass(frozen=True)
class Corpus:
    """An encoded corpus: ``ids[n]`` is the n-th kept word and ``sentence[n]`` its sentence number."""

    ids: np.ndarray  # [N] int32
    sentence: np.ndarray  # [N] int32, non-decreasing

    def __len__(self) -> int:
        return len(self.ids)


def read_sentences(path: str | os.PathLike, encoding: str = "utf-8") -> list[list[str]]:
    """The file's non-empty lines, each split on whitespace; ``DataError`` if missing, undecodable or empty."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected a text corpus, one sentence per line)")
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not {encoding} text (byte {e.start}: {e.reason}); set the encoding flag") from e
    sentences = [words for words in (line.split() for line in text.splitlines()) if words]
    if not sentences:
        raise DataError(f"{path}: empty corpus, expected words separated by whitespace")
    return sentences


def build_vocab(
    sentences: Sequence[Sequence[str]], min_count: int = 5, max_vocab: int | None = None, source: str = "corpus"
) -> Vocabulary:
    """Words with count >= ``min_count``, at most the ``max_vocab`` most frequent, most frequent first."""
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    counter = Counter(w for sentence in sentences for w in sentence)
    if not counter:
        raise DataError(f"{source}: empty corpus, expected words separated by whitespace")
    # Counter keeps first-appearance order and sorted() is stable, so ties stay in that order.
    kept = sorted(((w, c) for w, c in counter.items() if c >= min_count), key=lambda wc: -wc[1])
    if max_vocab is not None:
        kept = kept[:max_vocab]
    if not kept:
        top = max(counter.values())
        raise DataError(f"{source}: no word occurs min_count={min_count} times (the most frequent occurs {top})")
    words, counts = zip(*kept, strict=True)
    return Vocabulary(tuple(words), np.array(counts, dtype=np.int64))


def encode(sentences: Sequence[Sequence[str]], vocab: Vocabulary) -> Corpus:
    """The corpus as ids of in-vocabulary words (OOV words dropped, as word2vec.c and gensim do)."""
    ids = [vocab.ids(sentence) for sentence in sentences]
    sentence = [np.full(len(x), i, dtype=np.int32) for i, x in enumerate(ids)]
    if not ids:
        return Corpus(np.zeros(0, np.int32), np.zeros(0, np.int32))
    return Corpus(np.concatenate(ids), np.concatenate(sentence))


def keep_probability(counts: np.ndarray, sample: float) -> np.ndarray:
    """word2vec.c's subsampling: ``min(1, (sqrt(c / (s N)) + 1) * s N / c)``, float64 [V]; all ones if s = 0."""
    counts = np.asarray(counts, dtype=np.float64)
    if sample <= 0:
        return np.ones_like(counts)
    threshold = sample * counts.sum()
    return np.minimum(1.0, (np.sqrt(counts / threshold) + 1.0) * threshold / counts)


def subsample(corpus: Corpus, keep: np.ndarray, rng: np.random.Generator) -> Corpus:
    """The corpus with each word kept independently with probability ``keep[id]``."""
    kept = rng.random(len(corpus)) < keep[corpus.ids]
    return Corpus(corpus.ids[kept], corpus.sentence[kept])


def noise_distribution(counts: np.ndarray, exponent: float = 0.75) -> np.ndarray:
    """The negative-sampling distribution ``c_w ** exponent / sum_v c_v ** exponent``, float64 [V]."""
    weights = np.asarray(counts, dtype=np.float64) ** exponent
    return weights / weights.sum()


def reduced_windows(rng: np.random.Generator, n: int, window: int) -> np.ndarray:
    """Each position's window, uniform on 1..window (word2vec.c's ``window - rand() % window``), int32 [n]."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return rng.integers(1, window + 1, size=n, dtype=np.int32)


def context_matrix(corpus: Corpus, windows: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Every position's context: ids [N, 2W] int32 and a mask [N, 2W] bool.

    Column j holds the word at offset ``o_j`` in (-W, ..., -1, 1, ..., W); it is masked out when
    ``|o_j| > windows[n]``, when it falls outside the corpus, or in another sentence.
    """
    n = len(corpus)
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])  # [2W]
    positions = np.arange(n)[:, None] + offsets[None, :]  # [N, 2W]
    inside = (positions >= 0) & (positions < n)
    positions = np.clip(positions, 0, max(n - 1, 0))
    mask = inside & (np.abs(offsets)[None, :] <= windows[:, None])
    mask &= corpus.sentence[positions] == corpus.sentence[:, None]
    return corpus.ids[positions].astype(np.int32), mask


def skipgram_pairs(corpus: Corpus, windows: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Skip-gram examples in corpus order: ``(inputs, targets)``, int32 [P] each.

    As in word2vec.c and gensim, the *context* word is the input (its vector in the input table)
    and the *center* word is the target the output layer must score; each (center, context) pair
    in the window appears once, so the model is the paper's "center predicts context" up to the
    symmetric role of the two words.
    """
    contexts, mask = context_matrix(corpus, windows, window)
    centers = np.broadcast_to(corpus.ids[:, None], contexts.shape)
    return contexts[mask], np.ascontiguousarray(centers[mask])


def cbow_examples(corpus: Corpus, windows: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CBOW examples in corpus order: ``(contexts [M, 2W] int32, mask [M, 2W] bool, centers [M] int32)``.

    Positions whose window holds no word of the same sentence are dropped (nothing to average).
    """
    contexts, mask = context_matrix(corpus, windows, window)
    has_context = mask.any(axis=1)
    return contexts[has_context], mask[has_context], corpus.ids[has_context]


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A read corpus: its sentences' word count, vocabulary and encoding."""

    raw_words: int
    vocab: Vocabulary
    corpus: Corpus


def prepare(path: str | os.PathLike, encoding: str = "utf-8", min_count: int = 5, max_vocab: int = 0) -> Prepared:
    """Reads and encodes the corpus ``path`` (one sentence per line); ``DataError`` (naming the file) for a bad or
    empty corpus. ``max_vocab``: keep at most this many most frequent words (0: no limit)."""
    sentences = read_sentences(path, encoding)
    vocab = build_vocab(sentences, min_count, max_vocab or None, source=path)
    return Prepared(sum(map(len, sentences)), vocab, encode(sentences, vocab))
