"""Recurrences linear in the carry, ``h_t = a_t * h_{t-1} + b_t``, and their evaluation in parallel over time.

A cell says its recurrence is linear by giving ``coefficients(params, u_t) -> (a_t, b_t)``: elementwise, real or
complex, ``[*batch, h]`` each, computed from the (projected) input alone, so for all steps at once. Its ``step``
follows (``linear_cell``), and ``seqjax.scan.unroll`` can then evaluate the whole sequence either step by step
(``jax.lax.scan``) or with ``jax.lax.associative_scan`` over the pairs ``(a_t, b_t)``, whose composition

    (a, b) then (a', b')  =  (a' a,  a' b + b')

is associative: T steps in O(log T) sequential depth. ``log_scan`` does the same in log space, for positive
coefficients (minGRU's and minLSTM's log-space form, Feng et al. 2024), where ``h_t`` is the sum
``A_t (h_0 + sum_{s<=t} b_s / A_s)``, ``A_t = prod_{s<=t} a_s``, taken as ``logcumsumexp``.

A cell may also give ``readout(params, h_t, u_t) -> y_t`` (default ``y_t = h_t``), e.g. the LRU's real part of
``C h_t`` plus ``D x_t``: it is the cell's ``Cell.readout``, the one way any cell says how its output reads its carry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from seqjax.cells.base import Cell, Params

Coefficients = Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]
LogCoefficients = Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]
Readout = Callable[[Params, jax.Array, jax.Array], jax.Array]


class Linear(NamedTuple):
    """What makes a cell's recurrence linear in its carry (``Cell.linear``).

    The output's readout from ``h_t`` is the cell's own (``Cell.readout``), as for any cell.

    Attributes:
      coefficients: ``(params, u [..., k]) -> (a, b)``, each ``[..., h]``: ``h_t = a_t * h_{t-1} + b_t``.
      log_coefficients: ``(params, u) -> (log a, log b)`` for a recurrence whose ``a`` and ``b`` are positive:
        the parallel path then runs in log space (``log_scan``). None: it runs on ``(a, b)``.
    """

    coefficients: Coefficients
    log_coefficients: LogCoefficients | None = None


def linear_cell(
    init_params: Callable[..., Params],
    coefficients: Coefficients,
    init_carry: Callable[[Params, tuple[int, ...]], jax.Array],
    *,
    project: Callable[[Params, jax.Array], jax.Array] | None = None,
    readout: Readout | None = None,
    log_coefficients: LogCoefficients | None = None,
    name: str = "linear",
) -> Cell:
    """A ``Cell`` whose step is ``h_t = a_t * h_{t-1} + b_t``, ``y_t = readout(h_t)`` (or ``h_t``).

    Args:
      init_params: ``(key, input_size, hidden_size) -> params``.
      coefficients: ``(params, u) -> (a, b)``, elementwise in the batch and time positions of ``u``.
      init_carry: ``(params, batch_shape) -> h_0`` (zeros, of the recurrence's dtype: complex for a complex one).
      project: optional input map applied to all positions at once (as any cell's).
      readout: ``(params, h [..., h], u [..., k]) -> y``, the cell's ``Cell.readout``; None: ``y_t = h_t``.
      log_coefficients: see ``Linear``.
      name: the cell's name.
    """
    linear = Linear(coefficients, log_coefficients)

    def step(params, h, u):
        a, b = coefficients(params, u)
        h = a * h + b
        return h, h if readout is None else readout(params, h, u)

    return Cell(init_params, step, init_carry, project, name=name, linear=linear, readout=readout)


def combine(earlier: tuple[jax.Array, jax.Array], later: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """The composition of two affine maps ``h -> a h + b``: first ``earlier``, then ``later``."""
    a1, b1 = earlier
    a2, b2 = later
    return a2 * a1, a2 * b1 + b2


def associative_scan(a: jax.Array, b: jax.Array, h0: jax.Array) -> jax.Array:
    """Every ``h_t = a_t h_{t-1} + b_t`` from ``h_0``, time-major ``a, b [t, ...]`` -> ``h [t, ...]``, in parallel."""
    b = b.at[0].add(a[0] * h0)
    _, h = jax.lax.associative_scan(combine, (a, b), axis=0)
    return h


def sequential_scan(a: jax.Array, b: jax.Array, h0: jax.Array) -> jax.Array:
    """``associative_scan``'s values one step at a time (``jax.lax.scan``)."""

    def body(h, ab):
        h = ab[0] * h + ab[1]
        return h, h

    return jax.lax.scan(body, h0, (a, b))[1]


LOG_ZERO = -1e30  # log 0 as a finite number: exp gives 0, and neither sums nor gradients meet inf - inf


def log_scan(log_a: jax.Array, log_b: jax.Array, log_h0: jax.Array) -> jax.Array:
    """``h_t = a_t h_{t-1} + b_t`` for positive ``a, b`` (and ``h_0 >= 0``) from their logarithms, time-major
    ``[t, ...]`` -> ``h [t, ...]``: ``log h_t = log A_t + logcumsumexp_s(log b_s - log A_s)`` with
    ``log A_t = sum_{s<=t} log a_s`` and ``b_0`` standing for ``h_0``. A zero ``b`` or ``h_0`` is ``LOG_ZERO``."""
    log_a_star = jnp.cumsum(log_a, axis=0)
    log_a_star = jnp.concatenate([jnp.zeros_like(log_a_star[:1]), log_a_star], axis=0)  # A_0 = 1 for h_0
    log_values = jnp.concatenate([log_h0[None], log_b], axis=0)
    log_h = log_a_star + jax.lax.cumlogsumexp(log_values - log_a_star, axis=0)
    return jnp.exp(log_h[1:])
