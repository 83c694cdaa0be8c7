"""Synthetic tasks against their definitions, written again here in NumPy: positions, values, labels, baselines."""

import math

import jax
import numpy as np
import pytest

from seqjax.data import synthetic

# One batch size per generator: jax.random compiles per shape, and this 2-core machine is slow at it.
ADDING_BATCH = 20_000
COPY_BATCH = 4000
TEMPORAL_BATCH = 4000

# ---------------------------------------------------------------------------------------------------------------------
# Adding problem


# Marker ranges [lo, hi) from the docstring: "le" one mark in the first half, one in the second half;
# "hochreiter" the first mark among the first 10 steps (fewer when T // 2 - 1 < 10), the second up to T // 2.
ADDING_RANGES = {
    ("le", 20): ((0, 10), (10, 20)),
    ("hochreiter", 30): ((0, 10), (10, 15)),
    ("hochreiter", 12): ((0, 5), (5, 6)),
}


def _adding_marks(xs):
    """Marker positions ``[b, 2]`` (ascending) after checking the marker channel is 0/1 with two 1s per row."""
    marker = xs[..., 1]
    assert set(np.unique(marker)) <= {0.0, 1.0}
    assert np.all(marker.sum(axis=1) == 2.0)
    rows, cols = np.nonzero(marker)
    assert np.array_equal(rows, np.repeat(np.arange(xs.shape[0]), 2))
    return cols.reshape(-1, 2)


def _adding_reference(xs, variant):
    """Target from the definition: X1 + X2 ("le") or 0.5 + (X1 + X2) / 4 ("hochreiter")."""
    marks = _adding_marks(xs)
    values = xs[..., 0].astype(np.float64)
    total = np.take_along_axis(values, marks, axis=1).sum(axis=1, keepdims=True)
    return total if variant == "le" else 0.5 + total / 4.0


@pytest.mark.parametrize(("variant", "seq_len"), list(ADDING_RANGES))
def test_adding_targets_and_marker_positions_match_the_definition(key, variant, seq_len):
    xs, targets = (np.asarray(a) for a in synthetic.adding_problem(key, ADDING_BATCH, seq_len, variant))
    assert xs.dtype == np.float32 and targets.dtype == np.float32
    assert xs.shape == (ADDING_BATCH, seq_len, 2) and targets.shape == (ADDING_BATCH, 1)
    np.testing.assert_allclose(targets, _adding_reference(xs, variant), rtol=1e-6, atol=1e-6)
    values = xs[..., 0]
    lo, hi = (0.0, 1.0) if variant == "le" else (-1.0, 1.0)
    assert values.min() >= lo and values.max() < hi
    assert values.min() < lo + 0.01 and values.max() > hi - 0.01  # the whole interval is used
    marks = _adding_marks(xs)
    for column, (start, stop) in enumerate(ADDING_RANGES[(variant, seq_len)]):
        # Every position of the documented range occurs, and no other.
        assert set(np.unique(marks[:, column])) == set(range(start, stop))


@pytest.mark.parametrize(
    ("variant", "seq_len", "mean", "baseline"),
    [
        ("le", 20, 1.0, synthetic.ADDING_LE_BASELINE_MSE),
        ("hochreiter", 30, 0.5, synthetic.ADDING_HOCHREITER_BASELINE_MSE),
    ],
)
def test_adding_mean_prediction_scores_the_baseline(key, variant, seq_len, mean, baseline):
    """Predicting E[target] (1 = 2 E[U[0,1]], 0.5 = 0.5 + 2 E[U[-1,1]] / 4) has MSE Var(target) = 1/6, 1/24."""
    _, targets = synthetic.adding_problem(key, ADDING_BATCH, seq_len, variant)
    targets = np.asarray(targets, dtype=np.float64)
    assert np.mean(targets) == pytest.approx(mean, abs=0.01)
    assert np.mean(np.square(targets - mean)) == pytest.approx(baseline, rel=0.04)
    assert baseline == pytest.approx({"le": 1.0 / 6.0, "hochreiter": 1.0 / 24.0}[variant])


# ---------------------------------------------------------------------------------------------------------------------
# Copying memory


def _copy_patterns(delay):
    """The definition as two strings over positions: S a data symbol, . blank, | delimiter; C a copied symbol."""
    inputs = "S" * 10 + "." * (delay - 1) + "|" + "." * 10
    targets = "." * (delay + 10) + "C" * 10
    return np.array(list(inputs)), np.array(list(targets))


def test_copy_patterns_written_out():
    """The pattern helper itself, against a hand-written example (delay 3)."""
    inputs, targets = _copy_patterns(3)
    assert "".join(inputs) == "SSSSSSSSSS..|.........."
    assert "".join(targets) == ".............CCCCCCCCCC"


@pytest.mark.parametrize("delay", [1, 3, 37])
def test_copy_memory_structure(key, delay):
    batch = COPY_BATCH
    inputs, targets = (np.asarray(a) for a in synthetic.copy_memory(key, batch, delay))
    assert inputs.dtype == np.int32 and targets.dtype == np.int32
    assert inputs.shape == targets.shape == (batch, delay + 20)
    in_pattern, out_pattern = _copy_patterns(delay)
    data = inputs[:, in_pattern == "S"]
    assert data.shape == (batch, 10)
    assert np.all((data >= 1) & (data <= 8))
    assert np.all(inputs[:, in_pattern == "."] == 0)
    assert np.array_equal(np.nonzero(inputs == 9)[1], np.full(batch, delay + 9))  # one delimiter, at delay + 9
    assert np.all(targets[:, out_pattern == "."] == 0)
    assert np.array_equal(targets[:, out_pattern == "C"], data)  # the same symbols, in the same order


def test_copy_memory_rejects_a_zero_delay(key):
    with pytest.raises(ValueError, match="delay >= 1"):
        synthetic.copy_memory(key, COPY_BATCH, 0)


@pytest.mark.parametrize("delay", [1, 10, 100])
def test_copy_memory_baseline_is_the_memoryless_cross_entropy(key, delay):
    """The memoryless strategy's predicted distribution, built explicitly: blank with probability 1 for
    delay + 10 steps, then 1/8 on each of the symbols 1..8; its mean cross-entropy on generated targets."""
    batch, length = COPY_BATCH, delay + 20
    _, targets = synthetic.copy_memory(key, batch, delay)
    targets = np.asarray(targets)
    predicted = np.zeros((batch, length, 10))
    predicted[:, : delay + 10, 0] = 1.0
    predicted[:, delay + 10 :, 1:9] = 1.0 / 8.0
    p_target = np.take_along_axis(predicted, targets[..., None], axis=-1)[..., 0]
    cross_entropy = -np.mean(np.log(p_target))
    assert cross_entropy == pytest.approx(synthetic.copy_memory_baseline(delay), rel=1e-12)
    assert cross_entropy == pytest.approx(10 * math.log(8) / (delay + 20), rel=1e-12)


def test_copy_memory_baseline_value_for_the_paper_delay():
    assert synthetic.copy_memory_baseline(100) == pytest.approx(0.17329, abs=1e-5)  # 10 ln 8 / 120


def test_copy_memory_symbols_are_uniform(key):
    inputs, _ = synthetic.copy_memory(key, COPY_BATCH, 2)
    counts = np.bincount(np.asarray(inputs)[:, :10].ravel(), minlength=10)
    assert counts[0] == 0 and counts[9] == 0
    frequencies = counts[1:9] / counts.sum()
    np.testing.assert_allclose(frequencies, 1.0 / 8.0, rtol=0.06)


# ---------------------------------------------------------------------------------------------------------------------
# Temporal order

VOCAB = "abcdXYBE"  # token id -> symbol, from the docstring
CLASS_OF = {("X", "X"): 0, ("X", "Y"): 1, ("Y", "X"): 2, ("Y", "Y"): 3}
# t1 in [T // 10, 2T // 10), t2 in [5T // 10, 6T // 10), written out by hand: the shortest valid length, an odd
# one. (Each new length costs a compilation, so T = 100 is checked through temporal_order_ranges only.)
TEMPORAL_RANGES = {10: ((1, 2), (5, 6)), 37: ((3, 7), (18, 22))}


@pytest.mark.parametrize("seq_len", list(TEMPORAL_RANGES))
def test_temporal_order_matches_the_definition(key, seq_len):
    batch = TEMPORAL_BATCH
    inputs, labels = (np.asarray(a) for a in synthetic.temporal_order(key, batch, seq_len))
    assert inputs.dtype == np.int32 and labels.dtype == np.int32
    assert inputs.shape == (batch, seq_len) and labels.shape == (batch,)
    symbols = np.array(list(VOCAB))[inputs]  # [b, t] of one-character strings
    assert np.all(symbols[:, 0] == "B") and np.all(symbols[:, -1] == "E")
    relevant = (symbols == "X") | (symbols == "Y")
    assert np.all(relevant.sum(axis=1) == 2)
    rows, cols = np.nonzero(relevant)
    assert np.array_equal(rows, np.repeat(np.arange(batch), 2))
    t1, t2 = cols.reshape(batch, 2).T
    (lo1, hi1), (lo2, hi2) = TEMPORAL_RANGES[seq_len]
    assert set(np.unique(t1)) == set(range(lo1, hi1))
    assert set(np.unique(t2)) == set(range(lo2, hi2))
    assert synthetic.temporal_order_ranges(seq_len) == TEMPORAL_RANGES[seq_len]
    distractors = symbols[:, 1:-1][~relevant[:, 1:-1]]
    assert set(np.unique(distractors)) == {"a", "b", "c", "d"}
    np.testing.assert_allclose(np.unique(distractors, return_counts=True)[1] / distractors.size, 0.25, rtol=0.1)
    first, second = symbols[np.arange(batch), t1], symbols[np.arange(batch), t2]
    expected = np.array([CLASS_OF[(s1, s2)] for s1, s2 in zip(first, second, strict=True)])
    assert np.array_equal(labels, expected)
    class_frequencies = np.bincount(labels, minlength=4) / batch
    assert np.all(class_frequencies > 0)
    np.testing.assert_allclose(class_frequencies, 0.25, atol=0.04)


def test_temporal_order_chance_level(key):
    """ln 4 is the cross-entropy of the uniform prediction (exact); a constant guess scores ~ 0.25."""
    _, labels = synthetic.temporal_order(key, TEMPORAL_BATCH, 37)
    labels = np.asarray(labels)
    uniform = np.full((labels.size, 4), 0.25)
    cross_entropy = -np.mean(np.log(uniform[np.arange(labels.size), labels]))
    assert cross_entropy == pytest.approx(synthetic.TEMPORAL_ORDER_BASELINE_CE, rel=1e-12)
    assert synthetic.TEMPORAL_ORDER_BASELINE_CE == pytest.approx(math.log(4.0))
    for guess in range(4):
        assert np.mean(labels == guess) == pytest.approx(synthetic.TEMPORAL_ORDER_BASELINE_ACCURACY, abs=0.03)


def test_temporal_order_ranges_for_the_paper_length():
    assert synthetic.temporal_order_ranges(100) == ((10, 20), (50, 60))
    assert synthetic.temporal_order_ranges(19) == ((1, 3), (9, 11))


@pytest.mark.parametrize("seq_len", [0, 1, 5, 9])
def test_temporal_order_rejects_short_sequences(key, seq_len):
    with pytest.raises(ValueError, match="seq_len >= 10"):
        synthetic.temporal_order(key, TEMPORAL_BATCH, seq_len)


# ---------------------------------------------------------------------------------------------------------------------
# Every generator

GENERATORS = {
    "adding": lambda key: synthetic.adding_problem(key, ADDING_BATCH, 20, "le"),
    "adding_hochreiter": lambda key: synthetic.adding_problem(key, ADDING_BATCH, 30, "hochreiter"),
    "copy": lambda key: synthetic.copy_memory(key, COPY_BATCH, 3),
    "temporal_order": lambda key: synthetic.temporal_order(key, TEMPORAL_BATCH, 37),
    "random": lambda key: synthetic.random_inputs(key, 4, 12, 3, 1),
}


def test_every_listed_task_has_a_generator():
    assert set(synthetic.TASKS) == set(GENERATORS)


@pytest.mark.parametrize("name", list(GENERATORS))
def test_reproducible_from_the_key_and_different_across_keys(key, name):
    generate = GENERATORS[name]
    first, again, other = generate(key), generate(key), generate(jax.random.fold_in(key, 1))
    for array, same, different in zip(first, again, other, strict=True):
        assert np.array_equal(np.asarray(array), np.asarray(same))
        assert not np.array_equal(np.asarray(array), np.asarray(different))
