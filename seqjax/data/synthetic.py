"""Synthetic sequence tasks, generated on the fly from a key: any length, any batch.

Each generator returns ``(xs [b, t, d], targets)`` as float32 arrays and is a pure function of its
key, so a batch is reproducible from ``jax.random.fold_in(key, step)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

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
