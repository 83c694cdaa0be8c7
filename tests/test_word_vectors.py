"""WordVectors: lookups, unit vectors, most_similar, analogies (single and batched) vs their equations and gensim;
its word2vec files."""

import warnings

import numpy as np
import pytest

from seqjax.data.text import DataError
from seqjax.models.word_vectors import WordVectors, load_word2vec, save_word2vec, unit_rows


def random_vectors(v=60, d=8, seed=0, zero_rows=()):
    vectors = np.random.default_rng(seed).standard_normal((v, d)).astype(np.float32)
    vectors[list(zero_rows)] = 0
    return WordVectors(tuple(f"w{i}" for i in range(v)), vectors)


def angle_vectors():
    """2-d unit-length-2 vectors at known angles: cos(a, b) = cos(angle difference)."""
    angles = {"east": 0, "e10": 10, "e30": 30, "north": 90, "west": 180, "south": 270}
    words = tuple(angles)
    radians = np.deg2rad([angles[w] for w in words])
    return WordVectors(words, 2 * np.stack([np.cos(radians), np.sin(radians)], axis=1))


def cos_deg(degrees):
    return float(np.cos(np.deg2rad(degrees)))


def test_construction_validates_and_copies():
    source = np.ones((2, 3))
    wv = WordVectors(["a", "b"], source)
    assert wv.words == ("a", "b") and wv.vectors.dtype == np.float32 and wv.dim == 3 and len(wv) == 2
    source[0, 0] = 5  # a private copy: the caller's array does not leak in
    assert wv.vectors[0, 0] == 1
    with pytest.raises(ValueError, match="read-only"):
        wv.vectors[0, 0] = 2
    with pytest.raises(ValueError, match="appears twice"):
        WordVectors(("a", "a"), np.ones((2, 3)))
    with pytest.raises(ValueError, match="shape"):
        WordVectors(("a", "b"), np.ones((3, 3)))
    with pytest.raises(ValueError, match="shape"):
        WordVectors(("a", "b"), np.ones(2))


@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_files_round_trip(tmp_path, binary):
    """save_word2vec then load_word2vec gives the same table; the file is word2vec's (header, then a word a line)."""
    wv = random_vectors(v=5, d=3, seed=4, zero_rows=(2,))
    path = tmp_path / "vectors.w2v"
    save_word2vec(path, wv, binary=binary)
    assert path.read_bytes().startswith(b"5 3\nw0 ")
    loaded = load_word2vec(path, binary=binary)
    assert isinstance(loaded, WordVectors) and loaded.words == wv.words
    np.testing.assert_array_equal(loaded.vectors, wv.vectors)
    with pytest.raises(ValueError, match="whitespace"):
        save_word2vec(path, WordVectors(("a b", "c"), np.ones((2, 2))), binary=binary)
    with pytest.raises(DataError, match="no such file"):
        load_word2vec(tmp_path / "missing.w2v", binary=binary)


def test_lookups():
    wv = angle_vectors()
    assert wv.index("north") == 3 and "north" in wv and "up" not in wv
    np.testing.assert_allclose(wv.vector("north"), [0, 2], atol=1e-6)
    with pytest.raises(KeyError, match="'up' is not in the vocabulary"):
        wv.index("up")
    with pytest.raises(KeyError, match="'up'"):
        wv.similarity("up", "north")


def test_unit_vectors_zero_rows_stay_zero_and_are_cached():
    wv = random_vectors(v=5, d=4, zero_rows=[2])
    unit = wv.unit
    assert unit is wv.unit
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), [1, 1, 0, 1, 1], rtol=1e-6)
    np.testing.assert_array_equal(unit[2], 0)
    np.testing.assert_allclose(unit[0], wv.vectors[0] / np.linalg.norm(wv.vectors[0]), rtol=1e-6)
    assert wv.similarity("w2", "w0") == 0.0
    np.testing.assert_array_equal(unit_rows(np.zeros((1, 3), np.float32)), 0)


def test_most_similar_known_angles():
    wv = angle_vectors()
    assert wv.similarity("east", "e30") == pytest.approx(cos_deg(30), abs=1e-6)
    result = wv.most_similar("east", topn=10)  # all but the query, by angle from east
    assert [w for w, _ in result] == ["e10", "e30", "north", "south", "west"]
    np.testing.assert_allclose([s for _, s in result], [cos_deg(t) for t in (10, 30, 90, 270, 180)], atol=1e-6)
    assert [w for w, _ in wv.most_similar("east", topn=2)] == ["e10", "e30"]
    # Only the first 4 words are candidates.
    assert [w for w, _ in wv.most_similar("west", topn=10, restrict_vocab=4)] == ["north", "e30", "e10", "east"]
    # unit(east + north) points at 45 degrees: e30 (15 away), then e10 (35 away).
    assert [w for w, _ in wv.most_similar(["east", "north"], topn=2)] == ["e30", "e10"]
    # north - east points at 135 degrees: nearest north (excluded), then west (45 away).
    assert wv.most_similar("north", negative="east", topn=1) == [("west", pytest.approx(cos_deg(45), abs=1e-6))]
    assert wv.most_similar("east", topn=0) == []


def test_most_similar_matches_equation():
    wv = random_vectors()
    x = wv.vectors.astype(np.float64)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    pos, neg = ["w3", "w7"], ["w11"]
    query = u[3] + u[7] - u[11]
    cosines = u[:40] @ (query / np.linalg.norm(query))
    expected = [(f"w{i}", cosines[i]) for i in np.argsort(-cosines) if i not in (3, 7, 11)][:5]
    result = wv.most_similar(pos, neg, topn=5, restrict_vocab=40)
    assert [w for w, _ in result] == [w for w, _ in expected]
    np.testing.assert_allclose([s for _, s in result], [s for _, s in expected], rtol=1e-5)


def analogy_by_equation(wv, a, b, c, method, restrict_vocab=None, epsilon=1e-3, exclude=None):
    """The best answer by the 3CosAdd / 3CosMul equations, one candidate at a time in float64."""
    x = wv.vectors.astype(np.float64)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    r = restrict_vocab or len(wv)
    exclude = {a, b, c} if exclude is None else exclude
    best, best_score = -1, -np.inf
    for i in range(r):
        if i in exclude:
            continue
        ca, cb, cc = u[i] @ u[a], u[i] @ u[b], u[i] @ u[c]
        if method == "add":
            score = cb - ca + cc
        else:
            score = (1 + cb) / 2 * (1 + cc) / 2 / ((1 + ca) / 2 + epsilon)
        if score > best_score:
            best, best_score = i, score
    return best


def add_mul_vectors():
    """calm : calmly :: quick : ? where 3CosAdd answers 'quickly' and 3CosMul 'quickest'.

    With a, b, c orthonormal, cos(quickly, .) = (0, .95, .2) and cos(quickest, .) = (0, .55, .55):
    add scores 1.15 vs 1.10; mul scores .975 * .6 / .5 = 1.17 vs .775^2 / .5 = 1.20.
    """
    basis = np.eye(5)
    a, b, c, e1, e2 = basis
    vectors = [a, b, c, 0.95 * b + 0.2 * c + np.sqrt(1 - 0.95**2 - 0.2**2) * e1, 0.55 * b + 0.55 * c]
    vectors[4] = vectors[4] + np.sqrt(1 - 2 * 0.55**2) * e2
    return WordVectors(("calm", "calmly", "quick", "quickly", "quickest"), 3 * np.stack(vectors))


def test_analogy_add_and_mul_known_answers():
    wv = add_mul_vectors()
    (word, score), *_ = wv.analogy("calm", "calmly", "quick", method="add", topn=2)
    assert word == "quickly"
    assert score == pytest.approx((0.95 + 0.2) / np.sqrt(3), abs=1e-6)  # cosine with unit(u_b - u_a + u_c)
    assert [w for w, _ in wv.analogy("calm", "calmly", "quick", method="add", topn=2)] == ["quickly", "quickest"]
    result = wv.analogy("calm", "calmly", "quick", method="mul", topn=2)
    assert [w for w, _ in result] == ["quickest", "quickly"]
    np.testing.assert_allclose([s for _, s in result], [0.775**2 / 0.501, 0.975 * 0.6 / 0.501], rtol=1e-5)
    assert wv.analogy("calm", "calmly", "quick", method="add", restrict_vocab=4) == [
        ("quickly", pytest.approx(0.664, abs=1e-3))
    ]
    with pytest.raises(ValueError, match="unknown analogy method"):
        wv.analogy("calm", "calmly", "quick", method="sub")


@pytest.mark.parametrize("method", ["add", "mul"])
def test_analogy_batch_matches_single_and_equation(method):
    wv = random_vectors(v=60, d=6, seed=1)
    rng = np.random.default_rng(2)
    a, b, c = (rng.integers(0, 60, 30) for _ in range(3))
    # chunk_size=7 splits the 30 questions unevenly; restrict_vocab=45 leaves some question words out of the candidates.
    predicted = wv.analogy_batch(a, b, c, method, restrict_vocab=45, chunk_size=7)
    for i in range(30):
        single = wv.analogy(f"w{a[i]}", f"w{b[i]}", f"w{c[i]}", method=method, restrict_vocab=45)
        assert wv.words[predicted[i]] == single[0][0]
        assert predicted[i] == analogy_by_equation(wv, a[i], b[i], c[i], method, restrict_vocab=45)
        assert predicted[i] not in (a[i], b[i], c[i])


def test_analogy_batch_candidate_key_excludes_variants():
    wv = random_vectors(v=20, d=4, seed=3)
    a, b, c = np.array([0, 5]), np.array([1, 6]), np.array([2, 7])
    plain = wv.analogy_batch(a, b, c)
    # Declare each question's plain answer a variant of its word a: it must be excluded now.
    key = np.arange(20)
    key[plain] = a
    keyed = wv.analogy_batch(a, b, c, candidate_key=key)
    for i in range(2):
        exclude = {int(a[i]), int(b[i]), int(c[i]), int(plain[i])}
        assert keyed[i] == analogy_by_equation(wv, a[i], b[i], c[i], "add", exclude=exclude)
    # With three candidates, all excluded: -1.
    assert wv.analogy_batch([0], [1], [2], restrict_vocab=3).tolist() == [-1]


def test_gensim_most_similar_cosmul_similarity():
    gensim_models = pytest.importorskip("gensim.models")
    wv = random_vectors(v=300, d=20, seed=4)
    kv = gensim_models.KeyedVectors(vector_size=20)
    kv.add_vectors(list(wv.words), wv.vectors)
    for pos, neg, restrict in ((["w1"], [], None), (["w2", "w3"], ["w4"], 100), (["w5"], ["w6", "w7"], 250)):
        ours, theirs = (
            wv.most_similar(pos, neg, topn=8, restrict_vocab=restrict),
            kv.most_similar(pos, neg, topn=8, restrict_vocab=restrict),
        )
        assert [w for w, _ in ours] == [w for w, _ in theirs]
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-5, atol=1e-6)
    for a, b, c in (("w10", "w11", "w12"), ("w200", "w3", "w150")):
        ours = wv.analogy(a, b, c, method="add", topn=5, restrict_vocab=200)
        theirs = kv.most_similar(positive=[b, c], negative=[a], topn=5, restrict_vocab=200)
        assert [w for w, _ in ours] == [w for w, _ in theirs]
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-5, atol=1e-6)
        ours = wv.analogy(a, b, c, method="mul", topn=5, epsilon=1e-6)  # gensim's epsilon; it ignores restrict_vocab
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # most_similar_cosmul calls the deprecated init_sims
            theirs = kv.most_similar_cosmul(positive=[b, c], negative=[a], topn=5)
        assert [w for w, _ in ours] == [w for w, _ in theirs]
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-5)
    for w1, w2 in (("w0", "w1"), ("w8", "w299")):
        assert wv.similarity(w1, w2) == pytest.approx(float(kv.similarity(w1, w2)), abs=1e-6)
