"""Memory tasks against their definitions, written again here in plain Python and NumPy from the papers: prefix
answers, layouts, masks, per-example lengths, chance levels, purity, jit and the metrics."""

import functools
import inspect
import itertools
import math

import jax
import numpy as np
import pytest

from seqjax.data import memory_tasks as mt
from seqjax.data import synthetic

# One batch size for the statistics and another for the rest, and one length for the state-tracking tasks (and an
# even one for modular arithmetic): each new shape costs a compilation.
BIG = 2000
SMALL = 16
STATE_LENGTH = 7


def _np(batch):
    return mt.TokenBatch(*(np.asarray(a) for a in batch))


@functools.cache
def _jitted(generator, batch, length, **options):
    return jax.jit(functools.partial(generator, batch=batch, length=length, **options))


def _generate(generator, key, batch, length, **options):
    """``generator(key, batch, length, **options)`` as NumPy arrays, compiled once per shape and options (the
    defaults filled in): one XLA program instead of one per operation (this file is bound by compile time)."""
    parameters = inspect.signature(generator).parameters.values()
    options = {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY} | options
    return _np(_jitted(generator, batch, length, **options)(key))


def _check_batch(batch, shape, vocab_size, num_classes):
    for array, dtype in zip(batch, (np.int32, np.int32, np.bool_), strict=True):
        assert array.shape == shape and array.dtype == dtype
    assert batch.tokens.min() >= 0 and batch.tokens.max() < vocab_size
    assert batch.targets.min() >= 0 and batch.targets.max() < num_classes


def _binomial_close(frequencies, probabilities, n):
    """Observed frequencies within 5 standard errors of the probabilities (n draws each)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    tolerance = 5.0 * np.sqrt(probabilities * (1.0 - probabilities) / n) + 1e-12
    assert np.all(np.abs(np.asarray(frequencies) - probabilities) <= tolerance), (frequencies, probabilities)


# ---------------------------------------------------------------------------------------------------------------------
# State tracking: parity, cycle navigation, modular arithmetic

# Modular arithmetic symbols, from the docstring: residues 0..4, then + - * as ids 5, 6, 7.
MOD_SYMBOLS = ["0", "1", "2", "3", "4", "+", "-", "*"]


def _parity_reference(bits):
    """Parity of every prefix by counting ones."""
    return np.array([[sum(row[: i + 1]) % 2 for i in range(len(row))] for row in bits.tolist()])


def _cycle_reference(moves):
    """Walk the 5-cycle from state 0: token 0 left, 1 stay, 2 right."""
    out = []
    for row in moves.tolist():
        state, states = 0, []
        for a in row:
            state = (state + {0: -1, 1: 0, 2: 1}[a]) % 5
            states.append(state)
        out.append(states)
    return np.array(out)


def _evaluate(symbols, order):
    """An expression n op n op ... n (a list of strings) mod 5 with Python integers.

    precedence: split into terms at + and -, multiply out each term, add the signed terms.
    left_to_right: apply each operator to the value so far.
    """
    if order == "left_to_right":
        value = int(symbols[0])
        for op, n in zip(symbols[1::2], symbols[2::2], strict=True):
            value = {"+": value + int(n), "-": value - int(n), "*": value * int(n)}[op]
        return value % 5
    total, term = 0, int(symbols[0])
    for op, n in zip(symbols[1::2], symbols[2::2], strict=True):
        if op == "*":
            term *= int(n)
        else:
            total += term
            term = int(n) if op == "+" else -int(n)
    return (total + term) % 5


def test_the_reference_evaluator_on_the_papers_examples():
    """Examples from the reference code's docstring (1 + 2 * 3 = 2, 1 - 1 - 1 = 4, 0 * 1 + 4 * 3 - 2 = 0) and the
    paper (1 + 2 - 4 = 4); Python's own precedence agrees on all of them."""
    for text, value in [("1+2*3", 2), ("1-1-1", 4), ("0*1+4*3-2", 0), ("1+2-4", 4)]:
        assert _evaluate(list(text), "precedence") == value == eval(text) % 5
    assert _evaluate(list("1+2*3"), "left_to_right") == 9 % 5


def test_parity_matches_counting(key):
    batch = _generate(mt.parity, key, BIG, STATE_LENGTH)
    _check_batch(batch, (BIG, STATE_LENGTH), 2, 2)
    assert np.array_equal(batch.targets, _parity_reference(batch.tokens))
    assert np.array_equal(np.nonzero(batch.mask)[1], np.full(BIG, STATE_LENGTH - 1))
    # Chance: the answers are balanced (p = 1/2 exactly), and so are the bits.
    _binomial_close([batch.targets[:, -1].mean(), batch.tokens.mean()], [0.5, 0.5], [BIG, BIG * STATE_LENGTH])


def test_cycle_navigation_matches_walking(key):
    batch = _generate(mt.cycle_navigation, key, BIG, STATE_LENGTH)
    _check_batch(batch, (BIG, STATE_LENGTH), 3, 5)
    assert np.array_equal(batch.targets, _cycle_reference(batch.tokens))
    assert np.array_equal(np.nonzero(batch.mask)[1], np.full(BIG, STATE_LENGTH - 1))
    assert set(np.unique(batch.tokens)) == {0, 1, 2}


@pytest.mark.parametrize("order", mt.MODULAR_ORDERS)
@pytest.mark.parametrize("length", [STATE_LENGTH, STATE_LENGTH - 1])
def test_modular_arithmetic_matches_python_evaluation(key, order, length):
    batch = _generate(mt.modular_arithmetic, key, BIG, length, order=order)
    _check_batch(batch, (BIG, length), 8, 5)
    symbols = np.array(MOD_SYMBOLS)[batch.tokens]
    assert np.all(batch.tokens[:, 0::2] <= 4) and np.all(batch.tokens[:, 1::2] >= 5)  # number, operator, ...
    assert set(np.unique(batch.tokens[:, 1::2])) == {5, 6, 7}
    expected = np.zeros_like(batch.targets)
    for b, row in enumerate(symbols.tolist()):
        for end in range(0, length, 2):  # prefixes that end on a number
            expected[b, end] = _evaluate(row[: end + 1], order)
        if order == "precedence":
            whole = "".join(row[: length - (length % 2 == 0)])
            assert expected[b, len(whole) - 1] == eval(whole) % 5
    assert np.array_equal(batch.targets, expected)
    # The scored position is the last one that ends a well-formed expression: 6 for both 7 and 6 tokens.
    assert np.array_equal(np.nonzero(batch.mask)[1], np.full(BIG, {7: 6, 6: 4}[length]))


def _enumerated_distribution(task_name, length, order="precedence"):
    """The answer's distribution at a length by enumerating every string (all equally likely)."""
    if task_name == "cycle_navigation":
        answers = [_cycle_reference(np.array([s]))[0, -1] for s in itertools.product(range(3), repeat=length)]
        return np.bincount(answers, minlength=5) / len(answers)
    n = (length + 1) // 2  # numbers in the odd-length expression answered
    answers = []
    for numbers in itertools.product("01234", repeat=n):
        for ops in itertools.product("+-*", repeat=n - 1):
            symbols = [numbers[0]] + [s for pair in zip(ops, numbers[1:], strict=True) for s in pair]
            answers.append(_evaluate(symbols, order))
    return np.bincount(answers, minlength=5) / len(answers)


@pytest.mark.parametrize(
    ("task_name", "length", "order"),
    [("cycle_navigation", n, "precedence") for n in (1, 2, 3, 4, 5)]
    + [("modular_arithmetic", n, order) for n in (1, 3, 5, 6, 7) for order in mt.MODULAR_ORDERS],
)
def test_final_answer_distribution_by_enumeration(task_name, length, order):
    exact = mt.final_answer_distribution(task_name, length, order=order)
    np.testing.assert_allclose(exact, _enumerated_distribution(task_name, length, order), rtol=0, atol=1e-12)


def test_state_tracking_chance_levels():
    """Hand-counted values: one move lands on 4, 0 or 1 (1/3 each); 2 moves give 0 with 3/9; a * b is 0 with
    9/25, so at length 3 the answer is 0 with (2/3)(1/5) + (1/3)(9/25) = 19/75. Long strings tend to 1/5."""
    assert mt.state_tracking_chance("parity", 7) == 0.5
    assert mt.state_tracking_chance("cycle_navigation", 1) == pytest.approx(1 / 3)
    assert mt.state_tracking_chance("cycle_navigation", 2) == pytest.approx(3 / 9)
    assert mt.state_tracking_chance("modular_arithmetic", 3) == pytest.approx(19 / 75)
    assert mt.state_tracking_chance("modular_arithmetic", 4) == pytest.approx(19 / 75)  # answered at length 3
    for name in ("cycle_navigation", "modular_arithmetic"):
        assert mt.state_tracking_chance(name, 61) == pytest.approx(mt.TASKS[name].chance, abs=1e-6)
    assert max(mt.final_answer_distribution("modular_arithmetic", 61, order="left_to_right")) == pytest.approx(3 / 11)


def test_state_tracking_answers_follow_the_exact_distribution(key):
    """Answer frequencies over BIG examples against the enumerated distribution."""
    for name in ("cycle_navigation", "modular_arithmetic"):
        batch = _generate(mt.TASKS[name].generate, key, BIG, STATE_LENGTH)
        frequencies = np.bincount(batch.targets[batch.mask], minlength=5) / BIG
        _binomial_close(frequencies, _enumerated_distribution(name, STATE_LENGTH), BIG)


def test_final_positions_mask_rounds_modular_arithmetic_down_to_odd():
    lengths = np.array([1, 2, 3, 4, 5, 6])
    got = np.asarray(mt.final_positions_mask("modular_arithmetic", 6, lengths))
    assert np.array_equal(np.nonzero(got)[1], [0, 0, 2, 2, 4, 4])
    assert np.array_equal(got.sum(axis=1), np.ones(6))
    got = np.asarray(mt.final_positions_mask("parity", 6, lengths))
    assert np.array_equal(np.nonzero(got)[1], lengths - 1)
    with pytest.raises(ValueError, match="not a state-tracking task"):
        mt.final_positions_mask("copy", 6, lengths)


@pytest.mark.parametrize("name", mt.STATE_TRACKING)
def test_per_example_lengths_score_each_prefix_answer(key, name):
    """Each example scored at its own length l_b answers the string tokens[:l_b] (odd-rounded for modular
    arithmetic), computed from the definition on that string alone."""
    length = STATE_LENGTH
    k_data, k_len = jax.random.split(key)
    batch = _generate(mt.TASKS[name].generate, k_data, BIG, length)
    lengths = np.asarray(mt.sample_lengths(k_len, name, BIG, length))
    assert lengths.dtype == np.int32 and lengths.shape == (BIG,)
    assert set(np.unique(lengths)) == set(range(1, length + 1))
    _binomial_close(np.bincount(lengths, minlength=length + 1)[1:] / BIG, np.full(length, 1 / length), BIG)
    mask = np.asarray(mt.final_positions_mask(name, length, lengths))
    assert mask.shape == (BIG, length) and np.all(mask.sum(axis=1) == 1)
    position = np.argmax(mask, axis=1)
    scored = batch.targets[np.arange(BIG), position]
    for b in range(0, BIG, 37):
        string = batch.tokens[b, : lengths[b]]
        if name == "parity":
            expected = int(string.sum()) % 2
        elif name == "cycle_navigation":
            expected = _cycle_reference(string[None])[0, -1]
        else:
            symbols = [MOD_SYMBOLS[i] for i in string[: len(string) - (len(string) % 2 == 0)]]
            expected = _evaluate(symbols, "precedence")
            assert position[b] == len(symbols) - 1
        assert scored[b] == expected


# ---------------------------------------------------------------------------------------------------------------------
# Selective copying


@pytest.mark.parametrize(("num_tokens", "vocab_size", "length"), [(4, 6, 13), (16, 16, 40)])
def test_selective_copying_copies_the_data_tokens_in_order(key, num_tokens, vocab_size, length):
    """A small setting, and the paper's k = 16 and A = 16 (the defaults) at a short length."""
    k, marker = num_tokens, vocab_size - 1
    batch = _generate(mt.selective_copying, key, BIG, length, num_tokens=k, vocab_size=vocab_size)
    _check_batch(batch, (BIG, length), vocab_size, vocab_size)
    head, tail = batch.tokens[:, : length - k], batch.tokens[:, length - k :]
    assert np.all(tail == marker) and not np.any(head == marker)
    assert np.all((head != 0).sum(axis=1) == k)  # k data tokens among the noise
    data = np.array([[x for x in row if x != 0] for row in head.tolist()])  # read in order, skipping noise
    assert np.all((data >= 1) & (data <= vocab_size - 2))
    assert np.array_equal(batch.targets[:, length - k :], data)
    assert np.all(batch.targets[:, : length - k] == 0)
    assert np.array_equal(batch.mask, np.broadcast_to(np.arange(length) >= length - k, (BIG, length)))
    # Positions are a uniform k-subset: each head position holds data with probability k / (t - k).
    _binomial_close((head != 0).mean(axis=0), np.full(length - k, k / (length - k)), BIG)
    # Chance: the data symbols are uniform over 1..A-2.
    counts = np.bincount(data.ravel(), minlength=vocab_size)
    assert counts[0] == 0 and counts[marker] == 0
    _binomial_close(counts[1:marker] / data.size, np.full(vocab_size - 2, 1 / (vocab_size - 2)), data.size)


# ---------------------------------------------------------------------------------------------------------------------
# Multi-query associative recall


def _mqar_reference(tokens, num_pairs, vocab_size):
    """From the definition: a dict from the key-value pairs at the start; every later non-filler token is a query,
    answered by the dict. Returns the targets and the mask; checks the vocabularies on the way."""
    targets, mask = np.zeros_like(tokens), np.zeros(tokens.shape, bool)
    for b, row in enumerate(tokens.tolist()):
        keys, values = row[0 : 2 * num_pairs : 2], row[1 : 2 * num_pairs : 2]
        assert len(set(keys)) == len(set(values)) == num_pairs
        assert all(1 <= x < vocab_size // 2 for x in keys) and all(vocab_size // 2 <= v < vocab_size for v in values)
        bound = dict(zip(keys, values, strict=True))
        queried = []
        for i in range(2 * num_pairs, len(row)):
            if row[i] != 0:
                targets[b, i], mask[b, i] = bound[row[i]], True
                queried.append(row[i])
        assert sorted(queried) == sorted(keys)  # every key queried once
    return targets, mask


def test_associative_recall_answers_each_query_with_its_value(key):
    num_pairs, vocab_size, length = 3, 20, 17  # odd: a last filler position
    batch = _generate(mt.associative_recall, key, BIG, length, num_pairs=num_pairs, vocab_size=vocab_size)
    _check_batch(batch, (BIG, length), vocab_size, vocab_size)
    targets, mask = _mqar_reference(batch.tokens, num_pairs, vocab_size)
    assert np.array_equal(batch.targets, targets) and np.array_equal(batch.mask, mask)
    queries = np.nonzero(batch.mask)[1]
    assert np.all((queries - 2 * num_pairs) % 2 == 0)  # at even offsets in the query region
    # Chance: each query's value is uniform over the V - V//2 value tokens.
    values = batch.targets[batch.mask]
    _binomial_close(np.bincount(values, minlength=vocab_size)[10:] / values.size, np.full(10, 0.1), values.size)


@pytest.mark.parametrize("power_a", [0.01, 1.0])
def test_associative_recall_query_gaps_follow_zoologys_sampling(key, power_a):
    """Which gaps hold a query, against sequential sampling without replacement with p ~ g^(a - 1), g = 1..space
    (Zoology's numpy.random.choice(..., replace=False, p=p)): the probability that a gap is drawn, summed over
    every ordered sequence of draws."""
    num_pairs, length = 4, 24  # the default number of pairs; 8 gaps to choose 4 from
    space = (length - 2 * num_pairs) // 2
    batch = _generate(mt.associative_recall, key, BIG, length, power_a=power_a)
    gaps = (np.nonzero(batch.mask)[1] - 2 * num_pairs) // 2
    weight = np.arange(1, space + 1, dtype=np.float64) ** (power_a - 1)
    expected = np.zeros(space)
    for drawn in itertools.permutations(range(space), num_pairs):
        probability, left = 1.0, weight.sum()
        for g in drawn:
            probability *= weight[g] / left
            left -= weight[g]
        expected[list(drawn)] += probability
    assert expected.sum() == pytest.approx(num_pairs)
    _binomial_close(np.bincount(gaps, minlength=space) / BIG, expected, BIG)
    if power_a == 1.0:
        np.testing.assert_allclose(expected, num_pairs / space, atol=0.02)
    else:  # most queries near the pairs
        assert expected[0] > 2 * expected[-1]


# ---------------------------------------------------------------------------------------------------------------------
# Copy and temporal order as TokenBatches

TEMPORAL_VOCAB = "abcdXYBE"


def test_copy_memory_tokens_wraps_synthetic(key):
    length = GENERIC_LENGTH["copy"]
    batch = _generate(mt.copy_memory_tokens, key, BIG, length)
    _check_batch(batch, (BIG, length), 10, 10)
    inputs, targets = jax.jit(synthetic.copy_memory, static_argnums=(1, 2))(key, BIG, length - 20)
    assert np.array_equal(batch.tokens, inputs) and np.array_equal(batch.targets, targets)
    assert np.array_equal(batch.mask, np.broadcast_to(np.arange(length) >= length - 10, (BIG, length)))
    assert np.array_equal(batch.targets[:, -10:], batch.tokens[:, :10])  # the first 10 tokens, copied


def test_temporal_order_tokens_wraps_synthetic(key):
    length = GENERIC_LENGTH["temporal_order"]
    batch = _generate(mt.temporal_order_tokens, key, BIG, length)
    _check_batch(batch, (BIG, length), 8, 4)
    inputs, labels = jax.jit(synthetic.temporal_order, static_argnums=(1, 2))(key, BIG, length)
    assert np.array_equal(batch.tokens, inputs)
    assert np.array_equal(batch.mask, np.broadcast_to(np.arange(length) == length - 1, (BIG, length)))
    assert np.all(batch.targets[:, :-1] == 0) and np.array_equal(batch.targets[:, -1], labels)
    for row, label in zip(batch.tokens.tolist(), batch.targets[:, -1].tolist(), strict=True):
        s1, s2 = [TEMPORAL_VOCAB[i] for i in row if TEMPORAL_VOCAB[i] in "XY"]
        assert label == 2 * (s1 == "Y") + (s2 == "Y")


# ---------------------------------------------------------------------------------------------------------------------
# Every registered task

# A length for each task that is not its shortest: the generic checks also cover lengths above the minimum.
GENERIC_LENGTH = {
    "parity": STATE_LENGTH,
    "modular_arithmetic": STATE_LENGTH,
    "cycle_navigation": STATE_LENGTH,
    "selective_copying": 40,
    "associative_recall": 24,
    "copy": 22,
    "temporal_order": 11,
}


def test_every_task_has_a_generic_length():
    assert set(GENERIC_LENGTH) == set(mt.TASKS)
    for name, task in mt.TASKS.items():
        assert task.name == name and GENERIC_LENGTH[name] > task.min_length and task.reference


@pytest.mark.parametrize("name", list(mt.TASKS))
def test_task_is_a_pure_jittable_function_of_its_key(key, name):
    task, length = mt.TASKS[name], GENERIC_LENGTH[name]
    # Two separate traces (positional static arguments, and the keyword partial of _generate) agree. (Eager calls
    # would check the same and cost twice the compile time.)
    generate = jax.jit(task.generate, static_argnums=(1, 2))
    first = _np(generate(key, BIG, length))
    _check_batch(first, (BIG, length), task.vocab_size, task.num_classes)
    assert first.mask.any(axis=1).all()
    again = _generate(task.generate, key, BIG, length)
    other = _np(generate(jax.random.fold_in(key, 1), BIG, length))
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a, b)
    assert not np.array_equal(first.tokens, other.tokens)
    assert not np.array_equal(first.targets[first.mask], other.targets[other.mask])


@pytest.mark.parametrize("name", list(mt.TASKS))
def test_task_min_length(key, name):
    task = mt.TASKS[name]
    batch = _generate(task.generate, key, SMALL, task.min_length)
    _check_batch(batch, (SMALL, task.min_length), task.vocab_size, task.num_classes)
    assert batch.mask.any(axis=1).all()
    with pytest.raises(ValueError, match=f">= {task.min_length}"):
        task.generate(key, SMALL, task.min_length - 1)


@pytest.mark.parametrize("name", list(mt.TASKS))
def test_task_chance_is_the_best_constant_guess(key, name):
    """The most frequent answer at the scored positions scores the registered chance (the exact value at this
    length for the length-dependent state-tracking tasks)."""
    task, length = mt.TASKS[name], GENERIC_LENGTH[name]
    batch = _generate(task.generate, key, BIG, length)
    answers = batch.targets[batch.mask]
    best = np.bincount(answers, minlength=task.num_classes).max() / answers.size
    chance = mt.state_tracking_chance(name, length) if name in mt.STATE_TRACKING else task.chance
    if name not in mt.STATE_TRACKING or name == "parity":
        assert chance == task.chance
    # The maximum of the observed frequencies sits a little above chance: allow 5 standard errors.
    assert abs(best - chance) <= 5.0 * math.sqrt(chance * (1 - chance) / answers.size)


# ---------------------------------------------------------------------------------------------------------------------
# Metrics
