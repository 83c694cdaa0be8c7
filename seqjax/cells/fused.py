"""Fused sequences: a cell over all steps at once, with a hand-written backward pass (the cuDNN/oneDNN layout).

Autodiff of a scanned step computes every weight gradient inside the time loop: per step the skinny
products ``x_t^T dz_t`` and ``h_{t-1}^T dz_t`` of a [b]-row batch, plus two additions of a full
weight-sized matrix. A fused sequence keeps only the unavoidable small products in the loop:

    forward:   U = X W_ih                                  one [t*b, d] x [d, k] product
               for t:  a_t = h_{t-1} W_hh;  carry_t = cell arithmetic(u_t, a_t, carry_{t-1})
    backward:  for t (reversed): the hand-written derivative of the cell arithmetic gives du_t,
               da_t and the carry's cotangent, to which da_t W_hh^T is added
               dW_hh = H_prev^T dA                         one [h, t*b] x [t*b, k] product
               dW_ih = X^T dU, dX = dU W_ih^T              two more (autodiff of U = X W_ih)

A cell describes its arithmetic with ``Steps`` (a forward step that also returns what its derivative
needs, and that derivative); ``fused_sequence(steps)`` turns it into the ``fused`` function a
``Cell`` offers (see ``seqjax.cells.base``). Padded steps (``valid`` False) leave the carry
unchanged and output 0, exactly as ``seqjax.scan.unroll`` with ``lengths``: their cotangents pass
straight through. A restart step (``restart`` True, ``unroll``'s ``resets``) reads the initial carry
(or ``reset_carry`` when given) instead of the previous one: its carry's cotangent goes there, none to
the step before. With ``remat`` nothing per step is saved but the carries; the backward loop
recomputes each step's forward arithmetic (and ``a_t``, one more small product per step).

Precision (``seqjax.precision``): every product takes its operands in the weights' dtype and sums
into the carry's (at least float32), the step arithmetic and its derivative run in the carry's dtype,
the outputs come in the weights' dtype, and each gradient in its parameter's dtype.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import precision
from seqjax.cells.base import matmul_rows


@dataclasses.dataclass(frozen=True)
class Steps:
    """One step's arithmetic after the two matrix products, and its derivative.

    ``small`` is the cell's params without ``w_ih`` and ``w_hh``: biases, each added to ``u`` or to
    ``a``, so that their gradients are sums of ``du`` or ``da``. ``u = x_t W_ih`` and
    ``a = h_{t-1} W_hh`` come without biases. The carry's first leaf is the hidden state ``h``,
    which is also the step's output ``y``.

    Attributes:
      forward: ``(small, carry, u, a) -> (new_carry, saved)``; ``saved`` is what ``backward`` needs.
      backward: ``(small, saved, carry, new_carry, d_new_carry) -> (d_carry, du, da)``: the
        cotangents of the step's inputs given that of its output carry (``d_carry`` without the
        ``da W_hh^T`` term, which ``fused_sequence`` adds). ``da`` may be ``None`` when it equals
        ``du`` (cells whose pre-activation is ``u + a + b``), saving a [t, b, k] stack.
      bias_grads: ``(small, dus [t, b, k], das [t, b, k]) -> d_small``; the default serves cells
        whose one bias ``b`` is added to ``u``: its gradient is the sum of ``dus`` over steps and batch.
    """

    forward: Callable[[Any, Any, jax.Array, jax.Array], tuple[Any, Any]]
    backward: Callable[[Any, Any, Any, Any, Any], tuple[Any, jax.Array, jax.Array]]
    bias_grads: Callable[[Any, jax.Array, jax.Array], Any] = lambda small, dus, das: {"b": jnp.sum(dus, axis=(0, 1))}


def _hidden(carry) -> jax.Array:
    return jax.tree.leaves(carry)[0]


def _with_hidden(carry, hidden: jax.Array):
    leaves, treedef = jax.tree.flatten(carry)
    return jax.tree.unflatten(treedef, [hidden, *leaves[1:]])


def _select(m, new, old):
    return jax.tree.map(lambda n, o: jnp.where(m, n, o), new, old)


def fused_sequence(steps: Steps) -> Callable:
    """``fused(params, xs [t, b, d], carry, valid [t, b] | None, remat, restart [t, b] | None, reset_carry | None)
    -> (carry, ys [t, b, h])``."""

    def step_forward(small, w_hh, carry, u):
        """``steps.forward`` in the carry's dtype: ``u`` and the biases cast to it, ``a = h W_hh`` summed in it."""
        dtype = _hidden(carry).dtype
        small = precision.cast_floating(small, dtype)
        return steps.forward(small, carry, u.astype(dtype), precision.dot(_hidden(carry), w_hh))

    def forward(small, w_hh, us, carry0, reset, valid, restart, remat):
        def body(carry, inputs):
            u, m, r = inputs
            if r is not None:
                carry = _select(r, reset, carry)
            new_carry, saved = step_forward(small, w_hh, carry, u)
            if m is not None:
                new_carry = _select(m, new_carry, carry)
            return new_carry, (new_carry, None if remat else saved)

        carry, (carries, saved) = jax.lax.scan(body, carry0, (us, valid, restart))
        ys = _hidden(carries).astype(w_hh.dtype)
        if valid is not None:
            ys = jnp.where(valid, ys, jnp.zeros_like(ys))
        residuals = (small, w_hh, us if remat else None, carry0, reset, carries, saved, valid, restart)
        return (carry, ys), residuals

    @functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8))
    def sequence(small, w_hh, us, carry0, reset, valid, restart, remat, u_dtype):
        del u_dtype  # the dtype the backward pass returns dus in
        return forward(small, w_hh, us, carry0, reset, valid, restart, remat)[0]

    def sequence_fwd(small, w_hh, us, carry0, reset, valid, restart, remat, u_dtype):
        del u_dtype
        return forward(small, w_hh, us, carry0, reset, valid, restart, remat)

    def sequence_bwd(remat, u_dtype, residuals, cotangents):
        small, w_hh, us, carry0, reset, carries, saved, valid, restart = residuals
        d_last, dys = cotangents
        prev = jax.tree.map(lambda c0, cs: jnp.concatenate([c0[None], cs[:-1]], axis=0), carry0, carries)
        if restart is not None:  # the carry a restart step read
            prev = jax.tree.map(lambda c, p: jnp.where(restart, jnp.broadcast_to(c, p.shape), p), reset, prev)
        w_hh_t = w_hh.T
        dtype = _hidden(carry0).dtype
        small_wide = precision.cast_floating(small, dtype)

        def body(state, inputs):
            d_carry, d_initial = state
            dy, carry_prev, carry, saved_t, u, m, r = inputs
            if remat:
                _, saved_t = step_forward(small, w_hh, carry_prev, u)
            d_new = _with_hidden(d_carry, _hidden(d_carry) + dy.astype(dtype))
            if m is not None:
                d_new = _select(m, d_new, jax.tree.map(jnp.zeros_like, d_new))
            d_prev, du, da = steps.backward(small_wide, saved_t, carry_prev, carry, d_new)
            d_prev = _with_hidden(d_prev, _hidden(d_prev) + precision.dot(du if da is None else da, w_hh_t))
            if m is not None:
                d_prev = jax.tree.map(lambda d, skip: d + jnp.where(m, 0, skip), d_prev, d_carry)
            if r is not None:  # what reached the reset carry, not the step before
                d_initial = jax.tree.map(lambda acc, d: acc + jnp.where(r, d, 0), d_initial, d_prev)
                d_prev = jax.tree.map(lambda d: jnp.where(r, 0, d), d_prev)
            return (d_prev, d_initial), (du, da)

        inputs = (dys, prev, carries, saved, us, valid, restart)
        state = (d_last, None if restart is None else jax.tree.map(jnp.zeros_like, d_last))
        (d_carry0, d_reset), (dus, das) = jax.lax.scan(body, state, inputs, reverse=True)
        das = dus if das is None else das
        rows = das.shape[0] * das.shape[1]
        d_a = das.reshape(rows, -1).astype(w_hh.dtype)
        dw_hh = precision.dot(_hidden(prev).reshape(rows, -1).T, d_a, das.dtype).astype(w_hh.dtype)
        d_small = jax.tree.map(lambda g, p: g.astype(p.dtype), steps.bias_grads(small, dus, das), small)
        d_valid, d_restart = (None if m is None else np.zeros(m.shape, jax.dtypes.float0) for m in (valid, restart))
        return d_small, dw_hh, dus.astype(u_dtype), d_carry0, d_reset, d_valid, d_restart

    sequence.defvjp(sequence_fwd, sequence_bwd)

    def fused(params, xs: jax.Array, carry, valid=None, remat: bool = False, restart=None, reset_carry=None):
        small = {name: value for name, value in params.items() if name not in ("w_ih", "w_hh")}
        mask, again = (None if m is None else jnp.asarray(m, bool)[..., None] for m in (valid, restart))
        reset = None if restart is None else (carry if reset_carry is None else reset_carry)
        us = matmul_rows(xs.astype(params["w_ih"].dtype), params["w_ih"])
        return sequence(small, params["w_hh"], us, carry, reset, mask, again, remat, us.dtype)

    return fused
