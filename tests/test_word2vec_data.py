"""word2vec's data pipeline against hand-built examples and the formulas of word2vec.c."""

import numpy as np
import pytest

from seqjax.data import word2vec_data as data
from seqjax.data.text import DataError


def write(tmp_path, text, name="corpus.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_vocab_orders_by_count_then_first_appearance_and_prunes():
    sentences = [["b", "a", "c", "a"], ["d", "b", "a", "c", "e"]]
    vocab = data.build_vocab(sentences, min_count=2)
    assert vocab.words == ("a", "b", "c")  # a:3, then b:2 before c:2 (first seen first); d, e pruned
    np.testing.assert_array_equal(vocab.counts, [3, 2, 2])
    assert data.build_vocab(sentences, min_count=1, max_vocab=2).words == ("a", "b")


def test_encode_drops_oov_words_and_keeps_sentence_numbers():
    sentences = [["b", "a", "x", "a"], ["y"], ["a", "b"]]
    vocab = data.build_vocab(sentences, min_count=2)
    corpus = data.encode(sentences, vocab)
    np.testing.assert_array_equal(corpus.ids, [vocab.id(w) for w in "baaab"])
    np.testing.assert_array_equal(corpus.sentence, [0, 0, 0, 2, 2])


def test_bad_corpora_are_one_line_errors_naming_the_file(tmp_path):
    with pytest.raises(DataError, match=r"missing\.txt: no such file"):
        data.read_sentences(tmp_path / "missing.txt")
    with pytest.raises(DataError, match=r"blank\.txt: empty corpus"):
        data.read_sentences(write(tmp_path, "\n  \n\t\n", "blank.txt"))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.txt: not utf-8 text"):
        data.read_sentences(latin)
    assert data.read_sentences(latin, encoding="latin-1") == [["café", "au", "lait"]]
    sentences = data.read_sentences(write(tmp_path, "a b c\nd e\n", "rare.txt"))
    with pytest.raises(DataError, match=r"rare\.txt: no word occurs min_count=5 times \(the most frequent occurs 1\)"):
        data.build_vocab(sentences, min_count=5, source=str(tmp_path / "rare.txt"))


def test_keep_probability_is_word2vec_c_formula():
    counts = np.array([1000, 100, 10, 1])
    sample = 1e-2
    threshold = sample * counts.sum()  # 11.11
    expected = [(np.sqrt(c / threshold) + 1) * threshold / c for c in counts]
    expected = np.minimum(1.0, expected)
    np.testing.assert_allclose(data.keep_probability(counts, sample), expected)
    assert expected[0] < 0.2 and expected[-1] == 1.0  # frequent words dropped, rare words kept
    np.testing.assert_array_equal(data.keep_probability(counts, 0.0), 1.0)


def test_subsample_keeps_each_word_at_its_rate():
    ids = np.repeat(np.arange(3, dtype=np.int32), 20_000)
    corpus = data.Corpus(ids, np.zeros_like(ids))
    keep = np.array([0.1, 0.5, 1.0])
    kept = data.subsample(corpus, keep, np.random.default_rng(0))
    rates = np.bincount(kept.ids, minlength=3) / 20_000
    np.testing.assert_allclose(rates, keep, atol=0.01)


def test_noise_distribution_is_unigram_to_the_power():
    counts = np.array([16, 1, 81])
    np.testing.assert_allclose(data.noise_distribution(counts, 0.75), np.array([8, 1, 27]) / 36)
    np.testing.assert_allclose(data.noise_distribution(counts, 1.0), counts / 98)


def test_reduced_windows_are_uniform_on_1_to_window():
    windows = data.reduced_windows(np.random.default_rng(0), 50_000, 5)
    assert windows.min() == 1 and windows.max() == 5
    np.testing.assert_allclose(np.bincount(windows, minlength=6)[1:] / 50_000, 0.2, atol=0.01)


def test_context_matrix_by_hand():
    # Two sentences: [10 11 12] [13 14]; window 2; position windows chosen by hand.
    corpus = data.Corpus(np.array([10, 11, 12, 13, 14], np.int32), np.array([0, 0, 0, 1, 1], np.int32))
    windows = np.array([2, 1, 2, 2, 1], np.int32)
    contexts, mask = data.context_matrix(corpus, windows, 2)
    # Columns: offsets -2, -1, +1, +2.
    expected = [
        [None, None, 11, 12],
        [None, 10, 12, None],  # window 1: offsets +-2 masked
        [10, 11, None, None],  # +1, +2 are in the next sentence
        [None, None, 14, None],
        [None, 13, None, None],
    ]
    for row, want in enumerate(expected):
        for col, w in enumerate(want):
            assert mask[row, col] == (w is not None), (row, col)
            if w is not None:
                assert contexts[row, col] == w
    inputs, targets = data.skipgram_pairs(corpus, windows, 2)
    np.testing.assert_array_equal(inputs, [11, 12, 10, 12, 10, 11, 14, 13])
    np.testing.assert_array_equal(targets, [10, 10, 11, 11, 12, 12, 13, 14])
    contexts, cmask, centers = data.cbow_examples(corpus, windows, 2)
    np.testing.assert_array_equal(centers, [10, 11, 12, 13, 14])
    np.testing.assert_array_equal(cmask.sum(axis=1), [2, 2, 2, 1, 1])


def test_dynamic_window_sees_offset_o_with_probability_w_minus_o_plus_1_over_w():
    n, window = 20_000, 4
    corpus = data.Corpus(np.arange(n, dtype=np.int32), np.zeros(n, np.int32))
    windows = data.reduced_windows(np.random.default_rng(1), n, window)
    inputs, targets = data.skipgram_pairs(corpus, windows, window)
    offsets = inputs - targets  # ids are positions here
    for o in range(1, window + 1):
        rate = np.mean(offsets == o) * len(offsets) / n
        assert rate == pytest.approx((window - o + 1) / window, abs=0.02), o
