"""Mixed precision: bfloat16 matrix products over float32 parameters, losses and recurrent state.

The policy, for ``make_training(compute_dtype=jnp.bfloat16)`` (flag ``--compute_dtype=bfloat16``):

- Parameters and optimizer state stay float32 (the master copy). Each training step casts the
  floating parameters to the compute dtype (``cast_floating``) before the loss; the cast's
  derivative brings the gradients back in float32, where clipping and the optimizer work.
- The built-in cells take their matrix products in their parameters' dtype, so with bfloat16
  parameters every ``x W_ih`` and ``h W_hh`` is a bfloat16 product (tensor cores on GPU, the MXU on
  TPU). The recurrent product sums into the carry's dtype (``dot``), and the carry itself is at least
  float32 (``carry_dtype``): the LSTM's ``c_t = f c_{t-1} + i g`` and every gate runs in float32, so
  the state does not lose 8 bits of mantissa at every one of T steps. A step's output ``y_t`` is
  handed on in the compute dtype, so the layers above (and the softmax projection) stay bfloat16.
- Losses are float32: models upcast their logits before ``log_softmax``; layer norm computes its
  statistics in float32, and attention its scores (``scores``) and softmax.

No loss scaling: bfloat16 has float32's exponent range, so small gradients do not underflow as
they do in float16 (which is therefore not offered). With ``float32`` every cast here is the
identity and the computation is exactly the float32 one.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str) -> jnp.dtype:
    """The dtype named by a ``--compute_dtype`` value; ``ValueError`` names the known ones."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"--compute_dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {name!r}")
    return jnp.dtype(COMPUTE_DTYPES[name])


def cast_floating(tree: Any, dtype) -> Any:
    """``tree`` with every floating-point leaf cast to ``dtype``; integer, boolean and key leaves unchanged."""
    dtype = jnp.dtype(dtype)

    def cast(leaf):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            return jnp.asarray(leaf).astype(dtype)
        return leaf

    return jax.tree.map(cast, tree)


def carry_dtype(param_dtype) -> jnp.dtype:
    """The dtype a cell keeps its state in: its parameters' dtype, but never below float32."""
    dtype = jnp.dtype(param_dtype)
    return dtype if jnp.finfo(dtype).bits >= 32 else jnp.dtype(jnp.float32)


def dot(x: jax.Array, w: jax.Array, out_dtype=None) -> jax.Array:
    """``x [..., k] @ w [k, n]`` on operands in ``w``'s dtype, summed and returned in ``out_dtype``
    (default: ``x``'s dtype).

    With float32 ``x`` and ``w`` this is ``x @ w``. With a float32 state ``x`` and bfloat16 weights
    ``w`` it is one bfloat16 matrix product whose sums stay float32 (``preferred_element_type``),
    instead of the float32 product that type promotion of ``x @ w`` would give; its two backward
    products also take bfloat16 operands (the float32 cotangent rounded once), where autodiff would
    multiply the float32 cotangent by the bfloat16 operand in float32.
    """
    out_dtype = jnp.dtype(x.dtype if out_dtype is None else out_dtype)
    if x.dtype == w.dtype == out_dtype:
        return x @ w
    if w.ndim != 2:
        raise ValueError(f"precision.dot expects a matrix w [k, n], got shape {w.shape}")
    return _mixed_dot(x, w, out_dtype, x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _mixed_dot(x, w, out_dtype, x_dtype):
    del x_dtype
    return jnp.matmul(x.astype(w.dtype), w, preferred_element_type=out_dtype)


def _mixed_dot_fwd(x, w, out_dtype, x_dtype):
    return _mixed_dot(x, w, out_dtype, x_dtype), (x.astype(w.dtype), w)  # x is kept in w's (smaller) dtype


def _mixed_dot_bwd(out_dtype, x_dtype, residuals, g):
    """``dx = g w^T`` and ``dw = x^T g`` (summed over every leading axis), on operands in ``w``'s dtype."""
    x, w = residuals
    g = g.astype(w.dtype)
    dx = jnp.matmul(g, w.T, preferred_element_type=out_dtype).astype(x_dtype)
    rows = x.reshape(-1, x.shape[-1])
    dw = jnp.matmul(rows.T, g.reshape(-1, g.shape[-1]), preferred_element_type=out_dtype).astype(w.dtype)
    return dx, dw


_mixed_dot.defvjp(_mixed_dot_fwd, _mixed_dot_bwd)


def scores(q: jax.Array, k: jax.Array) -> jax.Array:
    """``q [..., n, d] k^T [..., d, m]`` summed and returned in float32, for softmaxes that need float32.

    With float32 ``q, k`` this is the plain product. With bfloat16 ``q, k`` it is one bfloat16 product
    with float32 sums, and its backward products take the float32 cotangent rounded once to bfloat16,
    where autodiff would multiply the float32 cotangent by the bfloat16 operands in float32.
    """
    if q.dtype == k.dtype == jnp.float32 or q.dtype != k.dtype or q.shape[:-2] != k.shape[:-2]:
        return jnp.einsum("...qd,...kd->...qk", q, k, preferred_element_type=jnp.float32).astype(jnp.float32)
    return _low_precision_scores(q, k)


@jax.custom_vjp
def _low_precision_scores(q, k):
    return jnp.einsum("...qd,...kd->...qk", q, k, preferred_element_type=jnp.float32)


def _low_precision_scores_fwd(q, k):
    return _low_precision_scores(q, k), (q, k)


def _low_precision_scores_bwd(residuals, g):
    q, k = residuals
    g = g.astype(q.dtype)
    dq = jnp.einsum("...qk,...kd->...qd", g, k, preferred_element_type=jnp.float32).astype(q.dtype)
    dk = jnp.einsum("...qk,...qd->...kd", g, q, preferred_element_type=jnp.float32).astype(k.dtype)
    return dq, dk


_low_precision_scores.defvjp(_low_precision_scores_fwd, _low_precision_scores_bwd)
