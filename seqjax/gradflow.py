"""Gradient-flow diagnostics: dL/dcarry_t and dL/dx_t at every step, Jacobian norms, spectral radii.

Pure functions returning arrays; plotting lives in ``seqjax.plots``.

All per-step gradients come from one backward pass: ``unroll`` adds a zero ``probe`` to the carry
after every step, ``carry_t <- carry_t + probe_t``, so dL/dprobe_t = dL/dcarry_t exactly, where
carry_t is the state step t hands on (to step t+1, to the final carry, and to the output y_t, which
is read from the probed carry: the cell's ``readout``, the carry leaf returned as y_t, or the step's
own computation of y_t from its carry, ``seqjax.probes``). For an LSTM the hidden part is the total
dL/dh_t, and the cell part is dL/dc_t at fixed h_t: the gradient arriving from the future through
c_{t+1} = f_{t+1} c_t + ... (the "constant error carousel"); it is 0 at the last step when the loss
reads only h_T.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from seqjax.cells.base import Carry, Cell, Params
from seqjax.scan import Unrolled, unroll


def zero_probe(cell: Cell, params: Params, batch: int, num_steps: int) -> Carry:
    """Zeros shaped like the stacked carries: each carry leaf ``[b, ...]`` becomes ``[b, t, ...]``."""
    carry = jax.eval_shape(lambda p: cell.init_carry(p, (batch,)), params)
    return jax.tree.map(lambda c: jnp.zeros((batch, num_steps, *c.shape[1:]), c.dtype), carry)


def carry_gradients(
    loss_fn: Callable[[Unrolled], jax.Array],
    cell: Cell,
    params: Params,
    xs: jax.Array,
    **unroll_kwargs,
) -> tuple[jax.Array, Carry]:
    """dL/dcarry_t for every step t, in one backward pass.

    Args:
      loss_fn: ``Unrolled -> scalar`` loss (e.g. of ``outputs[:, -1]`` or of all outputs).
      cell, params: the cell and its parameters.
      xs: inputs ``[b, t, d]``.
      **unroll_kwargs: forwarded to ``unroll`` (``lengths``, ``initial_carry``, ``remat``, ...).

    Returns:
      ``(loss, grads)``: grads is shaped like the stacked carries, ``[b, t, ...]`` per leaf (for an
      LSTM, ``LSTMCarry(hidden=dL/dh, cell=dL/dc)``).
    """
    probe = zero_probe(cell, params, xs.shape[0], xs.shape[1])

    def loss_of_probe(probe):
        return loss_fn(unroll(cell, params, xs, probe=probe, **unroll_kwargs))

    return jax.value_and_grad(loss_of_probe)(probe)


def input_gradients(loss_fn: Callable[[jax.Array], jax.Array], xs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """dL/dx_t for every step t: the gradient with respect to the inputs, defined for any model.

    Unlike dL/dcarry_t it needs no carry, so it compares recurrent cells with attention on the same
    inputs: for a cell it is ``dL/dx_t = (dh_t/dx_t)^T dL/dh_t`` (the carry gradient through one input
    projection), for self-attention the sum over every position that attends to x_t.

    Args:
      loss_fn: ``xs -> scalar`` loss of the whole model.
      xs: inputs ``[b, t, d]``.

    Returns:
      ``(loss, grads [b, t, d])``.
    """
    return jax.value_and_grad(loss_fn)(xs)


def scaled_norm(x: jax.Array, axis) -> jax.Array:
    """Euclidean norm over ``axis`` computed as max|x| * ||x / max|x|||.

    Squaring first would overflow float32 for entries above ~1e19 and flush those below ~1e-19 to
    zero, far inside the range of the values themselves (e.g. 3^29 or 0.2^29 times a gradient).
    A complex ``x`` (the LRU's state) has the norm of its moduli.
    """
    if jnp.iscomplexobj(x):
        x = jnp.abs(x)
    peak = jnp.max(jnp.abs(x), axis=axis, keepdims=True)
    safe = jnp.where(peak > 0, peak, jnp.ones_like(peak))
    return jnp.squeeze(peak, axis) * jnp.sqrt(jnp.sum(jnp.square(x / safe), axis=axis))


def step_norms(grads: Carry) -> Carry:
    """Per-example, per-step Euclidean norms: each ``[b, t, ...]`` leaf becomes ``[b, t]``."""
    return jax.tree.map(lambda g: scaled_norm(g, tuple(range(2, g.ndim))), grads)


def mean_over_batch(norms: Carry) -> Carry:
    """``[b, t] -> [t]``: the batch mean of per-example norms."""
    return jax.tree.map(lambda n: jnp.mean(n, axis=0), norms)


def final_output_jacobians(cell: Cell, params: Params, xs: jax.Array, **unroll_kwargs) -> Carry:
    """J_t = d y_T / d carry_t for every t: the sensitivity of the last output to each step's carry.

    ``y_T`` is the output at the last position (``h_T`` for the built-in cells). Computed as ``h``
    vector-Jacobian products through the probe, vectorised over the output basis.

    Returns:
      A pytree shaped like the carry whose leaves are ``[b, t, h_out, *carry_leaf_features]``.
    """
    probe = zero_probe(cell, params, xs.shape[0], xs.shape[1])

    def last_output(probe):
        return unroll(cell, params, xs, probe=probe, **unroll_kwargs).outputs[:, -1]

    y_last, vjp = jax.vjp(last_output, probe)
    out_size = y_last.shape[-1]
    basis = jnp.broadcast_to(jnp.eye(out_size, dtype=y_last.dtype)[:, None, :], (out_size, *y_last.shape))
    (rows,) = jax.vmap(vjp)(basis)  # leaves [h_out, b, t, ...]
    return jax.tree.map(lambda r: jnp.moveaxis(r, 0, 2), rows)


def jacobian_norms(jacobians: Carry) -> tuple[Carry, Carry]:
    """Frobenius and spectral norms of ``[b, t, h_out, h_in]`` Jacobians, each ``[b, t]``."""
    frobenius = jax.tree.map(lambda j: scaled_norm(j, (-2, -1)), jacobians)
    spectral = jax.tree.map(lambda j: jnp.linalg.norm(j, ord=2, axis=(-2, -1)), jacobians)
    return frobenius, spectral


def spectral_radius(w: jax.Array) -> jax.Array:
    """max |eig(W)| of a square matrix."""
    return jnp.max(jnp.abs(jnp.linalg.eigvals(w)))


def block_spectral_radii(w_hh: jax.Array) -> jax.Array:
    """Spectral radius of each ``[h, h]`` block of a fused recurrent matrix ``[h, g*h]`` -> ``[g]``."""
    size = w_hh.shape[0]
    blocks = jnp.stack(jnp.split(w_hh, w_hh.shape[1] // size, axis=1))
    return jax.vmap(spectral_radius)(blocks)
