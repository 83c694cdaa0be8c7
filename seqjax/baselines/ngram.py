"""Interpolated modified Kneser-Ney n-gram language model (Chen & Goodman 1998), in pure Python and NumPy.

Every training sequence is padded on the left with one begin-of-sentence context id ``BOS = -1``, which is
never predicted and is not part of the vocabulary ``{0, ..., V - 1}`` the distributions range over. Every
token of every sequence is predicted from at most ``order - 1`` previous tokens of the same sequence; a
sequence's first token is predicted from the context ``(BOS,)``. One long stream is one sequence.

Counts. ``c(g)`` is the raw count of the n-gram ``g``. The model's count of ``g`` at order ``n`` is::

    a(g) = c(g)                              if n == order, or g starts with BOS (it has no left extension)
    a(g) = N1+(• g) = |{v : c(v g) > 0}|     otherwise (the continuation count; v may be BOS)

Recursion. For a history ``h`` of ``n - 1`` tokens, ``h'`` being ``h`` without its first token::

    P_n(w | h) = (a(h w) - D_n(a(h w))) / A(h) + gamma_n(h) P_{n-1}(w | h')
    gamma_n(h) = (D_n1 N1(h •) + D_n2 N2(h •) + D_n3+ N3+(h •)) / A(h)
    P_0(w)     = 1 / V

with ``A(h) = sum_v a(h v)``, ``N_k(h •) = |{v : a(h v) = k}|`` (``N3+``: at least 3) and the first term
zero when ``a(h w) = 0``. A history never seen at order ``n`` (``A(h) = 0``) backs off fully: ``gamma = 1``.

Discounts. Per order ``n``, from the numbers ``n_k`` of n-grams with ``a(g) = k``::

    Y = n1 / (n1 + 2 n2),   D_k = k - (k + 1) Y n_{k+1} / n_k   (k = 1, 2, 3; D_3 is used for counts >= 3)

clipped to ``[0, k]`` so that no count loses more than it has. When one of ``n1..n4`` is zero the formula
is undefined and a single discount ``Y`` (``0.5`` if there are no singletons) is used for every count.
A fixed ``discount`` in ``(0, 1]`` replaces all of them.
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

BOS = -1

Ngram = tuple[int, ...]
Discounts = tuple[float, float, float]


def count_ngrams(padded_sequences: Iterable[Ngram], n: int) -> Counter[Ngram]:
    """Raw counts ``c(g)`` of the n-grams that end on a predicted token (every position but the leading BOS)."""
    counts: Counter[Ngram] = Counter()
    for sequence in padded_sequences:
        if n == 1:
            counts.update(zip(sequence[1:]))
        else:
            counts.update(zip(*(sequence[start:] for start in range(n)), strict=False))
    return counts


def continuation_counts(raw_counts: Mapping[Ngram, int], longer_raw_counts: Mapping[Ngram, int]) -> Counter[Ngram]:
    """Lower-order counts ``a(g)``: ``N1+(• g)`` from the (n+1)-grams, or ``c(g)`` where ``g`` starts with BOS."""
    counts = Counter(longer[1:] for longer in longer_raw_counts)
    # An n-gram that starts with BOS is never the suffix of an (n+1)-gram, so these keys are new.
    counts.update({ngram: count for ngram, count in raw_counts.items() if ngram[0] == BOS})
    return counts


def estimate_discounts(counts: Mapping[Ngram, int]) -> Discounts:
    """Chen & Goodman's ``(D1, D2, D3+)`` from the count-of-counts ``n1..n4`` (see the module docstring)."""
    count_of_counts = Counter(count for count in counts.values() if count <= 4)
    n1, n2, n3, n4 = (count_of_counts[k] for k in (1, 2, 3, 4))
    y = n1 / (n1 + 2 * n2) if n1 > 0 else 0.5
    if min(n1, n2, n3, n4) == 0:
        return (y, y, y)
    raw = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    return tuple(min(max(d, 0.0), k) for k, d in zip((1, 2, 3), raw, strict=True))


@dataclass(frozen=True)
class OrderTable:
    """One order's terms of the recursion: the discounted relative frequencies and the backoff weights."""

    weights: dict[Ngram, float]  # h w -> (a(h w) - D(a(h w))) / A(h), for every n-gram with a(h w) > 0
    backoff: dict[Ngram, float]  # h -> gamma(h), for every history seen at this order


def build_order_table(counts: Mapping[Ngram, int], discounts: Discounts) -> OrderTable:
    """The weights and backoff weights of one order from its counts ``a(g)`` and discounts."""
    discount_of_count = (0.0, *discounts)  # indexed by min(count, 3)
    history_total: dict[Ngram, int] = {}
    discounted_mass: dict[Ngram, float] = {}
    for ngram, count in counts.items():
        history = ngram[:-1]
        history_total[history] = history_total.get(history, 0) + count
        discounted_mass[history] = discounted_mass.get(history, 0.0) + discount_of_count[min(count, 3)]
    weights = {
        ngram: (count - discount_of_count[min(count, 3)]) / history_total[ngram[:-1]] for ngram, count in counts.items()
    }
    backoff = {history: mass / history_total[history] for history, mass in discounted_mass.items()}
    return OrderTable(weights, backoff)


def token_tuple(sequence: Sequence[int], vocab_size: int, allow_bos: bool = False) -> Ngram:
    """The sequence as a tuple of Python ints, each checked to be in ``[0, vocab_size)`` (or BOS if allowed)."""
    tokens = np.asarray(sequence)
    if tokens.ndim != 1:
        raise ValueError(f"a sequence must be 1-D token ids, got shape {tokens.shape} (one long stream is [stream])")
    if tokens.size == 0:
        return ()
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"token ids must be integers, got dtype {tokens.dtype}")
    invalid = (tokens < 0) | (tokens >= vocab_size)
    if allow_bos:
        invalid &= tokens != BOS
    if invalid.any():
        raise ValueError(f"token id {tokens[invalid][0]} is outside [0, {vocab_size})")
    return tuple(tokens.tolist())


@dataclass(frozen=True)
class KneserNey:
    """An interpolated modified Kneser-Ney model; ``tables[n]`` holds order ``n + 1`` (histories of n tokens)."""

    vocab_size: int
    order: int
    discounts: tuple[Discounts, ...]  # (D1, D2, D3+) per order, unigrams first
    tables: tuple[OrderTable, ...] = field(repr=False)

    @classmethod
    def fit(
        cls, sequences: Iterable[Sequence[int]], vocab_size: int, order: int = 5, discount: float | None = None
    ) -> KneserNey:
        """Counts every order from the BOS-padded sequences; ``discount`` fixes one discount for all orders."""
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be at least 1, got {vocab_size}")
        if discount is not None and not 0 < discount <= 1:
            raise ValueError(f"a fixed discount must be in (0, 1], got {discount}")
        padded = [(BOS, *token_tuple(sequence, vocab_size)) for sequence in sequences]
        if all(len(sequence) == 1 for sequence in padded):
            raise ValueError("empty training data: no tokens to count")
        tables, discounts = [], []
        longer_raw_counts: Counter[Ngram] = Counter()
        for n in range(order, 0, -1):
            raw_counts = count_ngrams(padded, n)
            counts = raw_counts if n == order else continuation_counts(raw_counts, longer_raw_counts)
            order_discounts = (discount,) * 3 if discount is not None else estimate_discounts(counts)
            tables.append(build_order_table(counts, order_discounts))
            discounts.append(order_discounts)
            longer_raw_counts = raw_counts
        return cls(vocab_size, order, tuple(reversed(discounts)), tuple(reversed(tables)))

    def prob(self, context: Sequence[int], token: int) -> float:
        """``P(token | the last order - 1 tokens of context)``; the context is taken as given (BOS marks a start)."""
        token = operator.index(token)
        if not 0 <= token < self.vocab_size:
            raise ValueError(f"token id {token} is outside [0, {self.vocab_size})")
        return self._prob(self._history(context), token)

    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """``P(. | context)`` over the vocabulary, ``[vocab_size]`` float64; costs ``O(order * vocab_size)``."""
        history = self._history(context)
        probabilities = np.full(self.vocab_size, 1.0 / self.vocab_size)
        for table, suffix in zip(self.tables, self._suffixes(history), strict=False):
            gamma = table.backoff.get(suffix)
            if gamma is None:
                break  # a longer suffix of an unseen history is unseen too: gamma = 1 from here on
            weights = np.fromiter(
                (table.weights.get((*suffix, token), 0.0) for token in range(self.vocab_size)),
                dtype=np.float64,
                count=self.vocab_size,
            )
            probabilities = weights + gamma * probabilities
        return probabilities

    def nll(self, sequences: Iterable[Sequence[int]]) -> tuple[float, int]:
        """(sum of ``-log P`` in nats, number of tokens) over every token of the BOS-padded sequences."""
        total, count = 0.0, 0
        for sequence in sequences:
            padded = (BOS, *token_tuple(sequence, self.vocab_size))
            for position in range(1, len(padded)):
                history = padded[max(0, position - self.order + 1) : position]
                total -= math.log(self._prob(history, padded[position]))
            count += len(padded) - 1
        return total, count

    def _history(self, context: Sequence[int]) -> Ngram:
        """The last ``order - 1`` tokens of the context, validated."""
        history = token_tuple(context, self.vocab_size, allow_bos=True)
        return history[max(0, len(history) - self.order + 1) :]

    @staticmethod
    def _suffixes(history: Ngram) -> Iterable[Ngram]:
        """The suffixes of the history from the empty one up to the whole history."""
        return (history[len(history) - length :] for length in range(len(history) + 1))

    def _prob(self, history: Ngram, token: int) -> float:
        """The recursion for one token, from the uniform distribution up through the orders."""
        probability = 1.0 / self.vocab_size
        for table, suffix in zip(self.tables, self._suffixes(history), strict=False):
            gamma = table.backoff.get(suffix)
            if gamma is None:
                break  # as in distribution()
            probability = table.weights.get((*suffix, token), 0.0) + gamma * probability
        return probability
