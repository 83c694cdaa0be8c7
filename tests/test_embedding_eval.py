"""Analogy and word-pair evaluations: hand-made cases with known answers, NumPy ranks vs scipy, and gensim."""

import numpy as np
import pytest

from seqjax.data.text import DataError
from seqjax.models.embedding_eval import (
    evaluate_analogies,
    evaluate_word_pairs,
    pearson,
    rank_average,
    spearman,
)
from seqjax.models.word_vectors import WordVectors


def analogy_vectors():
    """Two blocks of orthogonal dimensions.

    Capitals: city = country_dim + capital, country = country_dim + country (dims g, f, h, r, cap, cty), so that
    greece - athens + paris = france exactly (cosine 1 for both methods). Adverbs (dims 6..10): with calm, calmly,
    quick orthonormal, cos(quickly, .) = (0, .95, .2) and cos(quickest, .) = (0, .55, .55), so 3CosAdd answers
    quickly (1.15 > 1.10) and 3CosMul quickest (.775^2/.501 = 1.199 > .975 * .6/.501 = 1.168). rome and italy come
    last, outside restrict_vocab=11.
    """
    e = np.eye(11)
    g, f, h, r, cap, cty, a, b, c, e1, e2 = e
    vectors = {
        "athens": g + cap,
        "greece": g + cty,
        "paris": f + cap,
        "france": f + cty,
        "berlin": h + cap,
        "germany": h + cty,
        "calm": a,
        "calmly": b,
        "quick": c,
        "quickly": 0.95 * b + 0.2 * c + np.sqrt(1 - 0.95**2 - 0.2**2) * e1,
        "quickest": 0.55 * b + 0.55 * c + np.sqrt(1 - 2 * 0.55**2) * e2,
        "rome": r + cap,
        "italy": r + cty,
    }
    return WordVectors(tuple(vectors), np.stack(list(vectors.values())))


ANALOGIES = """\
athens greece paris france
: capital-common-countries
athens greece paris france
athens greece berlin germany
ATHENS Greece PARIS france
paris france athens greece
athens greece rome italy
athens greece paris

: gram1-adjective-to-adverb
calm calmly quick quickly
: gram2-opposite
calm calmly quick quickest
"""


def sections(result):
    return [(s.name, s.correct, s.total, s.questions) for s in result.sections]


@pytest.mark.parametrize("method", ["add", "mul"])
def test_analogies_known_answers(tmp_path, method):
    path = tmp_path / "questions.txt"
    path.write_text(ANALOGIES)
    result = evaluate_analogies(analogy_vectors(), path, restrict_vocab=11, method=method)
    add = method == "add"
    # The rome question is unanswerable (rome, italy are words 12 and 13); line 1 precedes any header, line 8 has
    # three words; the blank line 9 is ignored.
    assert sections(result) == [
        ("capital-common-countries", 4, 4, 5),
        ("gram1-adjective-to-adverb", int(add), 1, 1),
        ("gram2-opposite", int(not add), 1, 1),
    ]
    assert (result.correct, result.total, result.questions) == (5, 6, 7)
    assert result.accuracy == pytest.approx(5 / 6)
    assert result.semantic_accuracy == 1.0 and result.syntactic_accuracy == 0.5
    assert result.coverage == pytest.approx(6 / 7)
    assert (result.malformed, result.malformed_lines) == (2, (1, 8))
    assert [s.kind for s in result.sections] == ["semantic", "syntactic", "syntactic"]
    assert "coverage 85.71%" in result.summary()


def test_analogies_restriction_and_case(tmp_path):
    path = tmp_path / "questions.txt"
    path.write_text(ANALOGIES)
    everything = evaluate_analogies(analogy_vectors(), path, restrict_vocab=None)
    assert sections(everything)[0] == ("capital-common-countries", 5, 5, 5) and everything.coverage == 1.0
    # Case-sensitive: "ATHENS Greece PARIS france" is unanswerable too.
    exact = evaluate_analogies(analogy_vectors(), path, restrict_vocab=11, case_insensitive=False)
    assert sections(exact)[0] == ("capital-common-countries", 3, 3, 5) and exact.coverage == pytest.approx(5 / 7)
    with pytest.raises(ValueError, match="unknown analogy method"):
        evaluate_analogies(analogy_vectors(), path, method="cos")
    with pytest.raises(DataError, match="no such file"):
        evaluate_analogies(analogy_vectors(), tmp_path / "missing.txt")


def test_analogies_case_variants(tmp_path):
    """Case-insensitively, a variant of a question word is never the answer and a variant of the answer is right."""
    e = np.eye(5)
    g, f, cap, cty, other = e
    words = ("athens", "greece", "paris", "Paris", "France", "france")
    # "Paris" is the exact answer direction; "France" nearly; "france" points elsewhere.
    vectors = np.stack([g + cap, g + cty, f + cap, f + cty, f + 0.9 * cty + 0.1 * other, other])
    path = tmp_path / "q.txt"
    path.write_text(": capital-world\nathens greece paris france\n")
    wv = WordVectors(words, vectors)
    # PARIS means "paris" (first variant), so "Paris" is excluded; FRANCE means "France", the prediction.
    assert sections(evaluate_analogies(wv, path)) == [("capital-world", 1, 1, 1)]
    # Case-sensitively "Paris" wins and "france" is expected.
    assert sections(evaluate_analogies(wv, path, case_insensitive=False)) == [("capital-world", 0, 1, 1)]


ANGLES = (0, 10, 25, 45, 70, 100, 140, 170)  # degrees, of w0..w7


def pair_vectors():
    """w0..w7 in the plane at ANGLES; w7 comes after restrict_vocab=7."""
    radians = np.deg2rad(ANGLES)
    return WordVectors(tuple(f"w{i}" for i in range(8)), np.stack([np.cos(radians), np.sin(radians)], axis=1))


def pairs_file(tmp_path, scores):
    """Pairs (w0, w1), ..., (w0, w5), (w6, w1) (cosine decreasing: angles 10, 25, 45, 70, 100, 130) with the given
    human scores, then OOV pairs (unknown word, w7), malformed lines 13 and 14, comments and a blank line."""
    lines = ["# a comment", "# Word 1\tWord 2\tHuman (mean)"]
    lines += [f"w0\t{'W' if k == 3 else 'w'}{k}\t{s}" for k, s in zip(range(1, 6), scores[:5], strict=True)]
    lines += [f"w6\tw1\t{scores[5]}", "w0\tunknown\t3.0", "", "# another comment", "w7\tw1\t2.0"]
    lines += ["w0\tw1", "w0\tw2\tabc"]
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_word_pairs_order_and_reverse(tmp_path):
    cosines = np.cos(np.deg2rad([10, 25, 45, 70, 100, 130]))
    human = [9, 8, 7, 6, 5, 1.5]
    same = evaluate_word_pairs(pair_vectors(), pairs_file(tmp_path, human), restrict_vocab=7)
    assert (same.pairs_used, same.pairs_total, same.malformed, same.malformed_lines) == (6, 8, 2, (13, 14))
    assert same.oov_ratio == pytest.approx(2 / 8)
    assert same.spearman == pytest.approx(1.0)
    assert 0.9 < same.pearson < 1 and same.pearson == pytest.approx(pearson(human, cosines), abs=1e-6)
    reverse = evaluate_word_pairs(pair_vectors(), pairs_file(tmp_path, human[::-1]), restrict_vocab=7)
    assert reverse.spearman == pytest.approx(-1.0)
    assert reverse.pearson == pytest.approx(pearson(human[::-1], cosines), abs=1e-6) and reverse.pearson < -0.8
    assert (reverse.pairs_used, reverse.oov_ratio, reverse.malformed) == (6, 0.25, 2)
    assert "spearman -1.0000" in reverse.summary()
    # Human scores equal to the cosines: Pearson 1 too. Case-sensitively W3 is unknown.
    path = tmp_path / "exact.tsv"
    path.write_text("".join(f"w0\tw{k}\t{float(c)!r}\n" for k, c in zip(range(1, 6), cosines[:5], strict=True)))
    exact = evaluate_word_pairs(pair_vectors(), path)
    assert exact.spearman == pytest.approx(1.0) and exact.pearson == pytest.approx(1.0)
    assert (exact.oov_ratio, exact.pairs_used, exact.malformed) == (0.0, 5, 0)
    exact = evaluate_word_pairs(pair_vectors(), pairs_file(tmp_path, human), case_insensitive=False)
    assert (exact.pairs_used, exact.pairs_total) == (6, 8)  # W3 is out, w7 is in


def test_word_pairs_without_usable_pairs_is_nan(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("# nothing known\nfoo\tbar\t1.0\n")
    result = evaluate_word_pairs(pair_vectors(), path)
    assert np.isnan(result.spearman) and np.isnan(result.pearson)
    assert (result.pairs_used, result.pairs_total, result.oov_ratio) == (0, 1, 1.0)


def test_ranks_and_correlations_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.integers(0, 6, 40).astype(np.float64)  # many ties
        y = x + rng.integers(0, 4, 40)
        np.testing.assert_array_equal(rank_average(x), stats.rankdata(x, method="average"))
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
        assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert np.isnan(pearson([1, 1, 1], [1, 2, 3])) and np.isnan(spearman([1], [2]))


def random_case_vectors(v=300, d=20, seed=0):
    """Random vectors; words 100..139 are upper-case variants W0..W39 of w0..w39, close to them."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((v, d)).astype(np.float32)
    words = [f"w{i}" for i in range(v)]
    for j in range(40):
        words[100 + j] = f"W{j}"
        vectors[100 + j] = vectors[j] + 0.3 * rng.standard_normal(d)
    return WordVectors(tuple(words), vectors)


def generated_analogies(wv, rng):
    """Three sections of 60 questions each; the expected word is often one of the best answers."""
    lines = []
    for name in ("capital-world", "gram3-comparative", "misc"):
        lines.append(f": {name}")
        for _ in range(60):
            a, b, c = (wv.words[i] for i in rng.choice(220, 3, replace=False))  # some beyond 200
            ignore = {a.upper(), b.upper(), c.upper()}
            best = [w for w, _ in wv.analogy(a, b, c, topn=8, restrict_vocab=200) if w.upper() not in ignore]
            d = rng.choice([*best[:2], wv.words[rng.integers(220)]])
            lines.append(" ".join(w.upper() if rng.random() < 0.2 else w for w in (a, b, c, d)))
        lines.append("w1 w2 w3")
    return "\n".join(lines) + "\n"


def gensim_keyed_vectors(wv):
    gensim_models = pytest.importorskip("gensim.models")
    kv = gensim_models.KeyedVectors(vector_size=wv.dim)
    kv.add_vectors(list(wv.words), wv.vectors)
    return kv


@pytest.mark.parametrize("case_insensitive", [True, False])
def test_analogies_match_gensim(tmp_path, case_insensitive):
    wv = random_case_vectors()
    kv = gensim_keyed_vectors(wv)
    path = tmp_path / "questions.txt"
    path.write_text(generated_analogies(wv, np.random.default_rng(1)))
    ours = evaluate_analogies(wv, path, restrict_vocab=200, case_insensitive=case_insensitive)
    score, theirs = kv.evaluate_word_analogies(str(path), restrict_vocab=200, case_insensitive=case_insensitive)
    *theirs, total = theirs
    assert total["section"] == "Total accuracy"
    assert [(s.name, s.correct, s.total) for s in ours.sections] == [
        (s["section"], len(s["correct"]), len(s["correct"]) + len(s["incorrect"])) for s in theirs
    ]
    assert ours.accuracy == pytest.approx(score, abs=1e-12)
    assert ours.semantic_accuracy == pytest.approx(len(theirs[0]["correct"]) / ours.sections[0].total)
    assert ours.syntactic_accuracy == pytest.approx(len(theirs[1]["correct"]) / ours.sections[1].total)
    # A test that compares numbers: many questions answered, some skipped, neither all right nor all wrong.
    assert 50 < ours.total < ours.questions == 180 and 0.15 < ours.accuracy < 0.9
    assert ours.malformed == 3


def test_word_pairs_match_gensim(tmp_path):
    wv = random_case_vectors()
    kv = gensim_keyed_vectors(wv)
    rng = np.random.default_rng(2)
    lines = ["# header", "# Word 1\tWord 2\tHuman (mean)"]
    for i in range(150):
        a, b = (wv.words[j] for j in rng.choice(len(wv), 2, replace=False))
        if i % 25 == 0:
            b = f"nope{i}"
        a = a.upper() if rng.random() < 0.2 else a
        lines.append(f"{a}\t{b}\t{rng.uniform(0, 10):.1f}")  # one decimal: ties
    lines.append("w1\tw2")
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n")
    for case_insensitive in (True, False):
        ours = evaluate_word_pairs(wv, path, restrict_vocab=250, case_insensitive=case_insensitive)
        p, s, oov = kv.evaluate_word_pairs(str(path), restrict_vocab=250, case_insensitive=case_insensitive)
        assert ours.pearson == pytest.approx(p[0], abs=1e-6)
        assert ours.spearman == pytest.approx(s[0], abs=1e-6)
        assert ours.oov_ratio * 100 == pytest.approx(oov, abs=1e-9)
        assert 50 < ours.pairs_used < ours.pairs_total == 150 and ours.malformed == 1
