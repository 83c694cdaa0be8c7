"""Kneser-Ney n-gram model against hand-computed probabilities, its own definition of nll, and a known Markov chain."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from seqjax.baselines.ngram import BOS, KneserNey, estimate_discounts

TINY = [[0, 1, 2], [0, 1, 1]]  # vocab 4: token 3 never occurs
PTB = Path("/work/shared/data/ptb")


def random_corpus(seed: int, vocab_size: int = 7, sequences: int = 40) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab_size, size=rng.integers(1, 12)).tolist() for _ in range(sequences)]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("discount", [0.5, 1.0, None])
def test_distribution_sums_to_one(order, discount):
    contexts = [[], [BOS], [0], [3], [BOS, 0], [0, 1], [1, 1], [2, 3, 3], [3, 3, 3], [2, BOS, 0, 1], [1, 1, 2, 0]]
    for corpus, vocab_size in [(TINY, 4), (random_corpus(0), 9)]:
        model = KneserNey.fit(corpus, vocab_size, order=order, discount=discount)
        for context in contexts:
            distribution = model.distribution(context)
            assert distribution.shape == (vocab_size,)
            assert abs(distribution.sum() - 1.0) < 1e-9, (order, context)
            assert (distribution > 0).all()  # tokens 3 (TINY) and 7, 8 (random) are never seen
            for token in range(vocab_size):
                assert model.prob(context, token) == pytest.approx(distribution[token], rel=1e-12, abs=0)


def test_estimated_discounts_sum_to_one_on_a_larger_corpus():
    corpus = random_corpus(1, vocab_size=30, sequences=400)
    model = KneserNey.fit(corpus, 32, order=3)
    assert all(0 < d1 <= 1 and 0 <= d2 <= 2 and 0 <= d3 <= 3 for d1, d2, d3 in model.discounts)
    for context in ([], [BOS], [5], [BOS, 5], [5, 6], [31, 31]):
        assert abs(model.distribution(context).sum() - 1.0) < 1e-9


def test_bigram_by_hand():
    # Padded: [BOS 0 1 2], [BOS 0 1 1]. D = 0.5.
    # Bigram counts (raw, highest order): c(BOS 0) = 2, c(0 1) = 2, c(1 2) = 1, c(1 1) = 1.
    # Unigram continuation counts N1+(• w): w=0: {BOS} -> 1, w=1: {0, 1} -> 2, w=2: {1} -> 1, w=3: 0; total 4.
    # P1(w) = max(a(w) - D, 0) / 4 + D * 3 / 4 * (1 / 4), three unigram types seen.
    model = KneserNey.fit(TINY, 4, order=2, discount=0.5)
    uniform_share = 0.5 * 3 / 4 * 0.25
    unigram = [0.5 / 4 + uniform_share, 1.5 / 4 + uniform_share, 0.5 / 4 + uniform_share, uniform_share]
    assert unigram == [0.21875, 0.46875, 0.21875, 0.09375]
    # P(w | h) = max(c(h w) - D, 0) / c(h) + D * N1+(h •) / c(h) * P1(w)
    assert model.prob([0], 1) == pytest.approx((2 - 0.5) / 2 + 0.5 * 1 / 2 * 0.46875)  # 0.8671875
    assert model.prob([0], 0) == pytest.approx(0.5 * 1 / 2 * 0.21875)
    assert model.prob([1], 2) == pytest.approx((1 - 0.5) / 2 + 0.5 * 2 / 2 * 0.21875)  # 0.359375
    assert model.prob([1], 3) == pytest.approx(0.5 * 2 / 2 * 0.09375)
    assert model.prob([BOS], 0) == pytest.approx((2 - 0.5) / 2 + 0.5 * 1 / 2 * 0.21875)  # 0.8046875
    # Context 2 never precedes a token and the empty context has no bigram history: both are P1.
    np.testing.assert_allclose(model.distribution([2]), unigram, rtol=1e-12)
    np.testing.assert_allclose(model.distribution([]), unigram, rtol=1e-12)
    # Only the last order - 1 = 1 token of a context matters.
    assert model.prob([2, 3, 0], 1) == pytest.approx(0.8671875)


def test_trigram_by_hand():
    # Order 3, D = 0.5. Trigram counts: c(BOS 0 1) = 2, c(0 1 2) = 1, c(0 1 1) = 1.
    # Bigram counts: a(BOS 0) = c(BOS 0) = 2 (starts with BOS: raw count); continuation counts
    # a(0 1) = |{BOS}| = 1, a(1 2) = |{0}| = 1, a(1 1) = |{0}| = 1. Unigram counts as in the bigram test.
    model = KneserNey.fit(TINY, 4, order=3, discount=0.5)
    p1 = {0: 0.21875, 1: 0.46875, 2: 0.21875}
    p2_1_given_0 = (1 - 0.5) / 1 + 0.5 * 1 / 1 * p1[1]  # 0.734375
    p2_2_given_1 = (1 - 0.5) / 2 + 0.5 * 2 / 2 * p1[2]  # 0.359375
    assert model.prob([0], 1) == pytest.approx(p2_1_given_0)
    assert model.prob([BOS, 0], 1) == pytest.approx((2 - 0.5) / 2 + 0.5 * 1 / 2 * p2_1_given_0)  # 0.93359375
    assert model.prob([0, 1], 2) == pytest.approx((1 - 0.5) / 2 + 0.5 * 2 / 2 * p2_2_given_1)  # 0.4296875
    # With a continuation count a(BOS 0) = 1 this would be 0.5 + 0.5 * 0.21875.
    assert model.prob([BOS], 0) == pytest.approx((2 - 0.5) / 2 + 0.5 * 1 / 2 * p1[0])  # 0.8046875
    # An unseen trigram history (3 1) backs off fully to the bigram history (1).
    assert model.prob([3, 1], 2) == pytest.approx(p2_2_given_1)


def test_unigram_by_hand():
    corpus = [[0, 0, 1], [0, 2, 2, 0]]  # c = [4, 1, 2, 0], 7 tokens; vocab 5
    discount, vocab_size = 0.25, 5
    model = KneserNey.fit(corpus, vocab_size, order=1, discount=discount)
    counts = [4, 1, 2, 0, 0]
    for token, count in enumerate(counts):
        expected = max(count - discount, 0) / 7 + discount * 3 / 7 / vocab_size
        assert model.prob([], token) == pytest.approx(expected)
        assert model.prob([1, 2, BOS], token) == pytest.approx(expected)  # order 1 ignores the context


def test_estimate_discounts_by_hand():
    # n1 = 10, n2 = 4, n3 = 2, n4 = 1 (and two larger counts); Y = 10 / 18.
    counts = dict(enumerate([1] * 10 + [2] * 4 + [3] * 2 + [4] + [7, 9]))
    counts = {(key,): value for key, value in counts.items()}
    y = 10 / 18
    expected = (1 - 2 * y * 4 / 10, 2 - 3 * y * 2 / 4, 3 - 4 * y * 1 / 2)
    np.testing.assert_allclose(estimate_discounts(counts), expected, rtol=1e-12)
    np.testing.assert_allclose(expected, (5 / 9, 7 / 6, 17 / 9), rtol=1e-12)
    # Without any count of 4 the formula is undefined: one discount Y = n1 / (n1 + 2 n2) for every count.
    assert estimate_discounts({(0,): 1, (1,): 2, (2,): 1}) == pytest.approx((0.5, 0.5, 0.5))


@pytest.mark.parametrize("order", [1, 2, 3])
def test_nll_is_the_sum_of_token_log_probabilities(order):
    train, held_out = random_corpus(2), random_corpus(3, vocab_size=9, sequences=8)
    model = KneserNey.fit(train, 9, order=order)
    expected = 0.0
    for sequence in held_out:
        for position, token in enumerate(sequence):
            expected -= math.log(model.prob([BOS, *sequence[:position]], token))
    total, count = model.nll(held_out)
    assert count == sum(len(sequence) for sequence in held_out)
    assert total == pytest.approx(expected, rel=1e-12)
    # One long stream: a single sequence, BOS only at its start.
    stream = [token for sequence in held_out for token in sequence]
    expected_stream = -sum(math.log(model.prob([BOS, *stream[:position]], t)) for position, t in enumerate(stream))
    assert model.nll([stream]) == (pytest.approx(expected_stream, rel=1e-12), len(stream))


def sample_markov_chain(rng, transitions: np.ndarray, sequences: int, length: int) -> np.ndarray:
    """[sequences, length] chains started uniformly; each step draws from the previous token's row."""
    vocab_size = transitions.shape[0]
    cumulative = np.cumsum(transitions, axis=1)
    tokens = np.empty((sequences, length), dtype=np.int64)
    tokens[:, 0] = rng.integers(0, vocab_size, size=sequences)
    for step in range(1, length):
        uniforms = rng.random((sequences, 1))
        tokens[:, step] = np.minimum((cumulative[tokens[:, step - 1]] < uniforms).sum(axis=1), vocab_size - 1)
    return tokens


def test_bigram_recovers_a_markov_chain():
    rng = np.random.default_rng(0)
    vocab_size = 12
    transitions = rng.dirichlet(np.full(vocab_size, 0.3), size=vocab_size)
    train = sample_markov_chain(rng, transitions, sequences=2000, length=40)
    test = sample_markov_chain(rng, transitions, sequences=500, length=40)
    true_nll = test.shape[0] * math.log(vocab_size) - np.log(transitions[test[:, :-1], test[:, 1:]]).sum()
    true_perplexity = math.exp(true_nll / test.size)
    perplexities = {}
    for order in (1, 2):
        total, count = KneserNey.fit(train, vocab_size, order=order).nll(test)
        assert count == test.size
        perplexities[order] = math.exp(total / count)
    assert perplexities[2] < 0.8 * perplexities[1]
    assert perplexities[2] == pytest.approx(true_perplexity, rel=0.1)
    assert perplexities[2] > 0.98 * true_perplexity  # the true model is the best one in expectation


def test_bad_input():
    with pytest.raises(ValueError, match="order must be at least 1"):
        KneserNey.fit(TINY, 4, order=0)
    with pytest.raises(ValueError, match=r"token id 4 is outside \[0, 4\)"):
        KneserNey.fit([[0, 4]], 4)
    with pytest.raises(ValueError, match=r"token id -1 is outside"):
        KneserNey.fit([[BOS, 0]], 4)
    for empty in ([], [[]], [[], []]):
        with pytest.raises(ValueError, match="empty training data"):
            KneserNey.fit(empty, 4)
    with pytest.raises(ValueError, match="discount must be in"):
        KneserNey.fit(TINY, 4, discount=1.5)
    with pytest.raises(ValueError, match="must be 1-D"):
        KneserNey.fit([0, 1, 2], 4)
    model = KneserNey.fit(TINY, 4, order=2)
    with pytest.raises(ValueError, match="outside"):
        model.prob([0], 4)
    with pytest.raises(ValueError, match="outside"):
        model.distribution([-2])
    with pytest.raises(ValueError, match="outside"):
        model.nll([[0, 9]])


@pytest.mark.skipif(not (PTB / "ptb.train.txt").exists(), reason=f"Penn Treebank not found at {PTB}")
def test_ptb_trigram_perplexity_is_plausible():
    def read_lines(split: str, max_tokens: int) -> list[list[str]]:
        lines, tokens = [], 0
        with open(PTB / f"ptb.{split}.txt") as file:
            for line in file:
                lines.append([*line.split(), "<eos>"])
                tokens += len(lines[-1])
                if tokens >= max_tokens:
                    break
        return lines

    train, valid = read_lines("train", 50_000), read_lines("valid", 5_000)
    word_ids: dict[str, int] = {}
    for line in train + valid:
        for word in line:
            word_ids.setdefault(word, len(word_ids))

    def encode(lines):
        return [[word_ids[word] for word in line] for line in lines]

    vocab_size = 10_000  # the full train vocabulary; the slices use a part of it
    assert len(word_ids) <= vocab_size
    total, count = KneserNey.fit(encode(train), vocab_size, order=3).nll(encode(valid))
    assert count >= 5_000
    assert 100 < math.exp(total / count) < 2000
