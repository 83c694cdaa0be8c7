"""Corpus BLEU against sacrebleu (tokenize="none" on the same tokens) and against hand computations."""

import math

import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from seqjax.bleu import BleuScore, bleu_from_counts, closest_length, corpus_bleu, sacrebleu_score


def reference_bleu(hypotheses, references, max_order=4, smooth="exp"):
    """sacrebleu on space-joined tokens, no tokenization; ``references`` per hypothesis, missing ones as None."""
    streams = [
        [" ".join(refs[j]) if j < len(refs) else None for refs in references]
        for j in range(max(len(refs) for refs in references))
    ]
    metric = BLEU(tokenize="none", smooth_method=smooth, max_ngram_order=max_order)
    return metric.corpus_score([" ".join(hyp) for hyp in hypotheses], streams)


def assert_same(ours: BleuScore, theirs):
    assert ours.matches == tuple(theirs.counts) and ours.totals == tuple(theirs.totals)
    assert (ours.hyp_len, ours.ref_len) == (theirs.sys_len, theirs.ref_len)
    assert ours.score == pytest.approx(theirs.score, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(ours.precisions, theirs.precisions, rtol=1e-12, atol=1e-12)
    assert ours.brevity_penalty == pytest.approx(theirs.bp, rel=1e-12, abs=1e-12)
    assert ours.ratio == pytest.approx(theirs.ratio, rel=1e-12, abs=1e-12)


# sacrebleu's README example, tokenized by hand as its 13a tokenizer does (punctuation split off; "wasn't" kept).
README_HYPS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
README_REFS = [  # per hypothesis: (first stream, second stream)
    ("The dog bit the man.", "The dog had bit the man."),
    ("It was not unexpected.", "No one was surprised."),
    ("The man bit him first.", "The man had bitten the dog."),
]


def hand_tokenize(sentence):
    return sentence.replace(".", " .").split()


def test_sacrebleu_readme_example():
    hyps = [hand_tokenize(s) for s in README_HYPS]
    refs = [[hand_tokenize(r) for r in pair] for pair in README_REFS]
    ours = corpus_bleu(hyps, refs)
    assert_same(ours, reference_bleu(hyps, refs))
    # The numbers the README prints: BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17
    # ref_len = 18).
    assert round(ours.score, 2) == 48.53
    assert [round(p, 1) for p in ours.precisions] == [82.4, 50.0, 45.5, 37.5]
    assert round(ours.brevity_penalty, 3) == 0.943 and round(ours.ratio, 3) == 0.944
    assert (ours.hyp_len, ours.ref_len) == (17, 18)
    # The wrapper tokenizes the raw strings with 13a itself and agrees.
    assert sacrebleu_score(README_HYPS, README_REFS) == ours
    # The README's variable-reference example: the first hypothesis's first reference is '' (an empty reference).
    refs[0][0] = []
    assert round(corpus_bleu(hyps, refs).score, 2) == 29.44
    assert_same(corpus_bleu(hyps, refs), reference_bleu(hyps, refs))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("smooth", ["exp", "none"])
def test_random_corpora_with_several_references(seed, smooth):
    rng = np.random.default_rng(seed)
    words = ["a", "b", "c", "d", "e", "f"]

    def sentence(max_len=12):
        return [str(w) for w in rng.choice(words, size=rng.integers(0, max_len + 1))]

    hyps = [sentence() for _ in range(25)]
    refs = [[sentence() for _ in range(rng.integers(1, 4))] for _ in hyps]
    for max_order in (4, 2):
        assert_same(corpus_bleu(hyps, refs, max_order, smooth), reference_bleu(hyps, refs, max_order, smooth))


EDGE_CASES = {
    "shorter than every reference": ([["a", "b", "c"]], [[["a", "b", "c", "d", "e"], ["a", "b", "c", "d", "e", "f"]]]),
    "an empty hypothesis": ([["a", "b", "c", "d", "e"], []], [[["a", "b", "c", "d", "e"]], [["x", "y"]]]),
    "only empty hypotheses": ([[], []], [[["a", "b"]], [["c"]]]),
    "no 4-gram match": ([["a", "b", "c", "x", "b", "c", "d"]], [[["a", "b", "c", "d"], ["b", "c", "d", "a"]]]),
    "nothing matches": ([["x", "y", "z", "w", "v"]], [[["a", "b", "c", "d", "e"]]]),
    "shorter than 4 tokens": ([["a", "b", "c"], ["d", "e"]], [[["a", "b", "c"]], [["d", "e"]]]),
    "an empty reference": ([["a", "b"]], [[[], ["a", "b", "c", "d"]]]),
    "equally close references": ([["a", "b", "c", "d"]], [[["a", "b", "c", "d", "e"], ["a", "b", "c"]]]),
}


@pytest.mark.parametrize("case", EDGE_CASES)
@pytest.mark.parametrize("smooth", ["exp", "none"])
def test_edge_cases(case, smooth):
    hyps, refs = EDGE_CASES[case]
    ours = corpus_bleu(hyps, refs, smooth=smooth)
    assert_same(ours, reference_bleu(hyps, refs, smooth=smooth))
    if case == "equally close references":
        assert ours.ref_len == 3 and ours.brevity_penalty == 1.0  # 3 and 5 are both 1 away: the shorter wins
    if case == "no 4-gram match":
        assert ours.matches[3] == 0 and (ours.score > 0) == (smooth == "exp")
    if case == "shorter than 4 tokens":
        assert ours.totals[3] == 0 and ours.score == 0.0  # no 4-grams at all: no smoothing helps


def test_hand_computed_scores():
    # hyp "the cat sat on the mat", ref "the cat is on the mat" (both 6 tokens: BP = 1):
    #   1-grams: the x2 (ref has 2), cat, sat (0), on, mat   -> 5 / 6
    #   2-grams: the cat, cat sat (0), sat on (0), on the, the mat -> 3 / 5
    #   3-grams: the cat sat, cat sat on, sat on the (all 0), on the mat -> 1 / 4
    #   4-grams: none of 3 match -> 0 / 3: BLEU = 0 unsmoothed; "exp" takes p_4 = 1 / (2 * 3)
    hyp, ref = "the cat sat on the mat".split(), "the cat is on the mat".split()
    plain = corpus_bleu([hyp], [[ref]], smooth="none")
    assert plain.matches == (5, 3, 1, 0) and plain.totals == (6, 5, 4, 3) and plain.score == 0.0
    smoothed = corpus_bleu([hyp], [[ref]], smooth="exp")
    assert smoothed.brevity_penalty == 1.0
    np.testing.assert_allclose(smoothed.precisions, [500 / 6, 60, 25, 100 / 6])
    assert smoothed.score == pytest.approx(100 * (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25, rel=1e-12)

    # hyp "the the cat" against "the cat is here" and "a cat is on the mat", bigram BLEU:
    #   1-grams: "the" clipped to 1 (at most once in either reference), cat -> 2 / 3
    #   2-grams: the the (0), the cat -> 1 / 2
    #   closest reference length to 3: 4 (not 6) -> BP = exp(1 - 4 / 3)
    refs = ["the cat is here".split(), "a cat is on the mat".split()]
    score = corpus_bleu(["the the cat".split()], [refs], max_order=2)
    assert score.matches == (2, 1) and (score.hyp_len, score.ref_len) == (3, 4)
    assert score.brevity_penalty == pytest.approx(math.exp(-1 / 3), rel=1e-12)
    assert score.score == pytest.approx(100 * math.exp(-1 / 3) * math.sqrt(2 / 3 * 1 / 2), rel=1e-12)


def test_parts():
    assert closest_length(4, [6, 3, 5]) == 3 and closest_length(4, [5, 3]) == 3 and closest_length(9, [2, 7]) == 7
    assert bleu_from_counts([0, 0], [3, 2], 3, 3).score == 0.0  # no match at all: 0 even with smoothing


def test_bad_input_raises():
    with pytest.raises(TypeError, match="sequence of tokens"):
        corpus_bleu(["a b c"], [[["a", "b"]]])  # a string, not tokens
    with pytest.raises(TypeError, match="reference 0 of hypothesis 0"):
        corpus_bleu([["a"]], [["a b"]])
    with pytest.raises(ValueError, match="1 hypotheses but 2"):
        corpus_bleu([["a"]], [[["a"]], [["b"]]])
    with pytest.raises(ValueError, match="one or more"):
        corpus_bleu([["a"]], [[]])
    with pytest.raises(ValueError, match="unknown smooth"):
        corpus_bleu([["a"]], [[["a"]]], smooth="floor")
