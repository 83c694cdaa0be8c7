"""Synthetic sequence tasks, generated on the fly from a key: any length, any batch.

Each generator is a pure function of its key, so a batch is reproducible from
``jax.random.fold_in(key, step)``. The regression tasks (``random_inputs``, ``adding_problem``) return
``(xs [b, t, d], targets)`` as float32 arrays; the symbolic tasks (``copy_memory``, ``temporal_order``)
return int32 token ids ``[b, t]`` (one-hot or embed them) and int32 targets.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# Task names for a flags-driven experiment: "adding" is adding_problem(variant="le"), "adding_hochreiter"
# is adding_problem(variant="hochreiter"), "copy" is copy_memory, "temporal_order" is temporal_order and
# "random" is random_inputs.
TASKS = ("adding", "adding_hochreiter", "copy", "temporal_order", "random")

# The mean-squared error of always predicting the target's mean (1.0): Var(X1 + X2) = 2/12.
ADDING_LE_BASELINE_MSE = 1.0 / 6.0
# For the Hochreiter-Schmidhuber form, target 0.5 + (X1 + X2)/4 with X ~ U[-1, 1]: Var = 2 (1/3) / 16.
ADDING_HOCHREITER_BASELINE_MSE = 1.0 / 24.0


def random_inputs(key, batch: int, seq_len: int, input_size: int, output_size: int, every_step: bool = False):
    """N(0, 1) inputs ``[b, t, d]`` and N(0, 1) targets, ``[b, o]`` (or ``[b, t, o]`` if ``every_step``)."""
    k_x, k_y = jax.random.split(key)
    xs = jax.random.normal(k_x, (batch, seq_len, input_size))
    target_shape = (batch, seq_len, output_size) if every_step else (batch, output_size)
    return xs, jax.random.normal(k_y, target_shape)


def _two_marks(key, batch: int, seq_len: int, first_end: int, second_start: int, second_end: int):
    """Positions ``[b, 2]``: one in ``[0, first_end)``, one in ``[second_start, second_end)``."""
    k_1, k_2 = jax.random.split(key)
    first = jax.random.randint(k_1, (batch,), 0, first_end)
    second = jax.random.randint(k_2, (batch,), second_start, second_end)
    return jnp.stack([first, second], axis=1)


def adding_problem(key, batch: int, seq_len: int, variant: str = "le"):
    """The adding problem: remember two marked numbers across the sequence and add them.

    Inputs ``[b, t, 2]``: channel 0 holds random values, channel 1 is 1.0 at two marked steps and 0
    elsewhere. Targets ``[b, 1]``.

    variant="le" (Le, Jaitly & Hinton 2015; Arjovsky et al. 2016): values U[0, 1], one mark in the
      first half and one in the second half, target X1 + X2. Predicting the mean scores
      ``ADDING_LE_BASELINE_MSE`` = 1/6 ~ 0.167.
    variant="hochreiter" (Hochreiter & Schmidhuber 1997, experiment 4): values U[-1, 1], the first
      mark among the first 10 steps, the second in the first half, target 0.5 + (X1 + X2) / 4.
      Predicting the mean scores ``ADDING_HOCHREITER_BASELINE_MSE`` = 1/24.

    Requires ``seq_len >= 2`` ("le") or ``seq_len >= 4`` ("hochreiter").
    """
    k_v, k_m = jax.random.split(key)
    if variant == "le":
        if seq_len < 2:
            raise ValueError(f"the adding problem needs seq_len >= 2, got {seq_len}")
        values = jax.random.uniform(k_v, (batch, seq_len))
        half = seq_len // 2
        marks = _two_marks(k_m, batch, seq_len, half, half, seq_len)
    elif variant == "hochreiter":
        if seq_len < 4:
            raise ValueError(f"the Hochreiter adding problem needs seq_len >= 4, got {seq_len}")
        values = jax.random.uniform(k_v, (batch, seq_len), minval=-1.0, maxval=1.0)
        first_end = min(10, seq_len // 2 - 1)
        marks = _two_marks(k_m, batch, seq_len, first_end, first_end, seq_len // 2)
    else:
        raise ValueError(f"unknown adding-problem variant {variant!r}; known: le, hochreiter")
    marker = jnp.zeros((batch, seq_len)).at[jnp.arange(batch)[:, None], marks].set(1.0)
    total = jnp.sum(values * marker, axis=1, keepdims=True)
    targets = total if variant == "le" else 0.5 + total / 4.0
    return jnp.stack([values, marker], axis=-1), targets


# Copying memory: token ids. Vocabulary size 10: 0 blank, 1..8 data symbols, 9 delimiter.
COPY_VOCAB_SIZE = 10
COPY_BLANK = 0
COPY_DELIMITER = 9
COPY_NUM_SYMBOLS = 8
COPY_LENGTH = 10  # how many symbols are to be remembered


def copy_memory_baseline(delay: int) -> float:
    """Mean per-step cross-entropy (nats) of the memoryless strategy on ``copy_memory(..., delay)``.

    The strategy predicts blank with probability 1 for the first ``delay + 10`` steps (cost 0) and the
    uniform distribution over the 8 data symbols for the last 10 (cost ln 8 each):
    ``10 ln 8 / (delay + 20)`` (Arjovsky, Shah & Bengio 2016, section 4.1).
    """
    return COPY_LENGTH * math.log(COPY_NUM_SYMBOLS) / (delay + 2 * COPY_LENGTH)


def copy_memory(key, batch: int, delay: int):
    """The copying memory problem (Arjovsky, Shah & Bengio 2016, "Unitary evolution recurrent neural
    networks", section 4.1; after Hochreiter & Schmidhuber 1997).

    Sequence length ``t = delay + 20``. With ``s_1..s_10`` drawn independently and uniformly from the
    data symbols {1, ..., 8}:

    - inputs:  ``s_1..s_10``, then ``delay - 1`` blanks (0), then the delimiter (9) at position
      ``delay + 9``, then 10 blanks;
    - targets: ``delay + 10`` blanks, then ``s_1..s_10``.

    The paper writes the categories as a_0..a_7 (data), a_8 (blank), a_9 (delimiter); here blank is 0
    and the data symbols are 1..8, a relabelling. The memoryless baseline is
    ``copy_memory_baseline(delay)``.

    Args:
      key: a ``jax.random`` key.
      batch: b, the number of sequences.
      delay: T >= 1 in the paper's notation.

    Returns:
      ``(inputs, targets)``: token ids, both ``[b, delay + 20]`` int32 in {0, ..., 9}.
    """
    if delay < 1:
        raise ValueError(f"the copying memory problem needs delay >= 1, got {delay}")
    symbols = jax.random.randint(key, (batch, COPY_LENGTH), 1, COPY_NUM_SYMBOLS + 1, dtype=jnp.int32)
    blanks = jnp.full((batch, delay - 1), COPY_BLANK, dtype=jnp.int32)
    delimiter = jnp.full((batch, 1), COPY_DELIMITER, dtype=jnp.int32)
    tail = jnp.full((batch, COPY_LENGTH), COPY_BLANK, dtype=jnp.int32)
    inputs = jnp.concatenate([symbols, blanks, delimiter, tail], axis=1)
    targets = jnp.concatenate([jnp.full((batch, delay + COPY_LENGTH), COPY_BLANK, dtype=jnp.int32), symbols], axis=1)
    return inputs, targets


# Temporal order: token id = index in TEMPORAL_ORDER_VOCAB; class id = index in TEMPORAL_ORDER_CLASSES.
TEMPORAL_ORDER_VOCAB = ("a", "b", "c", "d", "X", "Y", "B", "E")
TEMPORAL_ORDER_CLASSES = ("XX", "XY", "YX", "YY")
# Chance level: predicting the uniform distribution over the 4 (equally likely) classes.
TEMPORAL_ORDER_BASELINE_CE = math.log(4.0)
TEMPORAL_ORDER_BASELINE_ACCURACY = 0.25


def temporal_order_ranges(seq_len: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The half-open position ranges ``((lo1, hi1), (lo2, hi2))`` of the two relevant symbols:
    ``t1`` in ``[T // 10, 2T // 10)`` and ``t2`` in ``[5T // 10, 6T // 10)`` (floor division), T = ``seq_len``:
    10-20 and 50-60 of 100, as in Hochreiter & Schmidhuber 1997 and Pascanu et al.'s 2013 code.

    Raises ValueError unless both are non-empty and lie strictly between the markers at 0 and T - 1,
    which holds exactly when ``seq_len >= 10``.
    """
    first = (seq_len // 10, 2 * seq_len // 10)
    second = (5 * seq_len // 10, 6 * seq_len // 10)
    if not (1 <= first[0] < first[1] <= second[0] < second[1] <= seq_len - 1):
        raise ValueError(
            f"the temporal order problem needs seq_len >= 10 (so that t1 in [T//10, 2T//10) and "
            f"t2 in [5T//10, 6T//10) are non-empty, distinct and away from the markers), got {seq_len}"
        )
    return first, second


def temporal_order(key, batch: int, seq_len: int):
    """The temporal order problem (Hochreiter & Schmidhuber 1997, "Long short-term memory", experiment 6a,
    in the fixed-length form of Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent
    neural networks").

    Vocabulary (token id: symbol): 0 a, 1 b, 2 c, 3 d (distractors), 4 X, 5 Y (relevant), 6 B (start
    marker), 7 E (end marker); see ``TEMPORAL_ORDER_VOCAB``. For each sequence of length T = ``seq_len``:

    - position 0 is B, position T - 1 is E;
    - two relevant positions ``t1`` uniform in ``[T // 10, 2T // 10)`` and ``t2`` uniform in
      ``[5T // 10, 6T // 10)`` (``temporal_order_ranges``; e.g. T = 100: [10, 20) and [50, 60)) each hold
      X or Y, independently with probability 1/2;
    - every other position holds a distractor drawn uniformly from {a, b, c, d}.

    The label is the class of (symbol at t1, symbol at t2): XX 0, XY 1, YX 2, YY 3, i.e.
    ``2 [s1 = Y] + [s2 = Y]``; the four classes are equally likely, so chance level is
    ``TEMPORAL_ORDER_BASELINE_CE`` = ln 4 and ``TEMPORAL_ORDER_BASELINE_ACCURACY`` = 0.25.

    Hochreiter & Schmidhuber write the sequence as starting with E and ending with B (the "trigger"), with
    random lengths 100-110, t1 in 10..20 and t2 in 50..60; the markers here are named begin/end instead,
    a relabelling, and the length is fixed.

    Args:
      key: a ``jax.random`` key.
      batch: b, the number of sequences.
      seq_len: T >= 10.

    Returns:
      ``(inputs, labels)``: token ids ``[b, T]`` int32 in {0, ..., 7} and class ids ``[b]`` int32 in {0, ..., 3}.
    """
    (lo1, hi1), (lo2, hi2) = temporal_order_ranges(seq_len)
    k_d, k_1, k_2, k_s = jax.random.split(key, 4)
    tokens = jax.random.randint(k_d, (batch, seq_len), 0, 4, dtype=jnp.int32)
    t1 = jax.random.randint(k_1, (batch,), lo1, hi1, dtype=jnp.int32)
    t2 = jax.random.randint(k_2, (batch,), lo2, hi2, dtype=jnp.int32)
    is_y = jax.random.randint(k_s, (batch, 2), 0, 2, dtype=jnp.int32)  # [b, 2]: 0 for X, 1 for Y
    x_id, b_id, e_id = (TEMPORAL_ORDER_VOCAB.index(s) for s in ("X", "B", "E"))
    rows = jnp.arange(batch)[:, None]
    tokens = tokens.at[rows, jnp.stack([t1, t2], axis=1)].set(x_id + is_y)
    tokens = tokens.at[:, 0].set(b_id).at[:, -1].set(e_id)
    labels = 2 * is_y[:, 0] + is_y[:, 1]
    return tokens, labels
