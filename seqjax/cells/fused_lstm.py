"""The LSTM over a whole sequence with a hand-written backward pass (the cuDNN/oneDNN layout).

``fused_lstm(params, xs, carry, valid, remat)`` computes exactly what scanning ``lstm()`` over the
inputs does (no peepholes). The input product ``X W_ih`` is one large matrix product before the
loop (the bias is added inside it, where it fuses with the gate arithmetic). The recurrence has a
hand-written VJP that keeps only two small products inside the time loop (forward ``h_{t-1} W_hh``,
backward ``dz_t W_hh^T``) and computes the weight gradient after it as one large product,

    dW_hh = sum_t h_{t-1}^T dz_t = H_prev^T [h, t*b] @ dZ [t*b, 4h],

where autodiff of ``lax.scan`` accumulates T skinny products and T additions of a [h, 4h] matrix
inside the loop. ``db`` is the sum of dz over steps and batch, and ``dW_ih = X^T dZ`` and
``dX = dZ W_ih^T`` are large products too (autodiff of the input product).

Backward of one step, with z = [z_i, z_f, z_g, z_o], (i, f, g, o) the gate activations, the
incoming carry cotangents (dh, dc) and the output cotangent dy_t (m_t is 1 at valid steps and 0
at padded ones, where the carry passes through unchanged):

    dh_new = m (dh + dy_t)          dc_new = m dc + dh_new o (1 - tanh(c_t)^2)
    dz = [dc_new g i (1-i),  dc_new c_{t-1} f (1-f),  dc_new i (1-g^2),  dh_new tanh(c_t) o (1-o)]
    dh_{t-1} = dz W_hh^T + (1-m) dh          dc_{t-1} = dc_new f + (1-m) dc

Residuals: the gate activations [t, b, 4h] and the carries [t, b, 2h]; with ``remat`` only the
carries, the gates being recomputed in the backward loop (one more small product per step).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _gates(z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    z_i, z_f, z_g, z_o = jnp.split(z, 4, axis=-1)
    return jax.nn.sigmoid(z_i), jax.nn.sigmoid(z_f), jnp.tanh(z_g), jax.nn.sigmoid(z_o)


def _forward(w_hh, b, us, h0, c0, valid, remat):
    """Scans the recurrence; returns (h_T, c_T, ys) and the residuals the backward pass needs."""

    def body(carry, inputs):
        h, c = carry
        u, m = inputs
        i, f, g, o = _gates(_preactivation(u, b, h, w_hh))
        c_new = f * c + i * g
        h_new = o * jnp.tanh(c_new)
        if m is not None:
            h_new, c_new = jnp.where(m, h_new, h), jnp.where(m, c_new, c)
        saved = None if remat else jnp.concatenate([i, f, g, o], axis=-1)
        return (h_new, c_new), (h_new, c_new, saved)

    (h_t, c_t), (hs, cs, gates) = jax.lax.scan(body, (h0, c0), (us, valid))
    ys = hs if valid is None else jnp.where(valid, hs, jnp.zeros_like(hs))
    return (h_t, c_t, ys), (w_hh, b, us, h0, c0, hs, cs, gates, valid)


def _preactivation(u, b, h, w_hh):
    """z = u + b + h W_hh for one step: ``u [b, 4h]``, ``b [4h]``, ``h [b, h]``."""
    z = h @ w_hh
    return u + jnp.broadcast_to(b, z.shape) + z


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _sequence(w_hh, b, us, h0, c0, valid, remat):
    return _forward(w_hh, b, us, h0, c0, valid, remat)[0]


def _sequence_fwd(w_hh, b, us, h0, c0, valid, remat):
    outputs, residuals = _forward(w_hh, b, us, h0, c0, valid, remat)
    if not remat:
        residuals = (*residuals[:2], None, *residuals[3:])  # us is not needed without recomputation
    return outputs, residuals


def _sequence_bwd(remat, residuals, cotangents):
    w_hh, b, us, h0, c0, hs, cs, gates, valid = residuals
    dh_t, dc_t, dys = cotangents
    h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)
    c_prev = jnp.concatenate([c0[None], cs[:-1]], axis=0)
    w_hh_t = w_hh.T

    def body(carry, inputs):
        dh, dc = carry
        dy, c, cp, hp, saved, u, m = inputs
        i, f, g, o = _gates(_preactivation(u, b, hp, w_hh)) if remat else jnp.split(saved, 4, axis=-1)
        dh_new = dh + dy if m is None else jnp.where(m, dh + dy, 0)
        tanh_c = jnp.tanh(c)
        dc_new = (dc if m is None else jnp.where(m, dc, 0)) + dh_new * o * (1 - tanh_c * tanh_c)
        dz = jnp.concatenate(
            [
                dc_new * g * i * (1 - i),
                dc_new * cp * f * (1 - f),
                dc_new * i * (1 - g * g),
                dh_new * tanh_c * o * (1 - o),
            ],
            axis=-1,
        )
        dh_prev, dc_prev = dz @ w_hh_t, dc_new * f
        if m is not None:
            dh_prev, dc_prev = dh_prev + jnp.where(m, 0, dh), dc_prev + jnp.where(m, 0, dc)
        return (dh_prev, dc_prev), dz

    (dh0, dc0), dzs = jax.lax.scan(
        body, (dh_t, dc_t), (dys, cs, c_prev, h_prev, gates, us if remat else None, valid), reverse=True
    )
    steps_batch = dzs.shape[0] * dzs.shape[1]
    dz_rows = dzs.reshape(steps_batch, -1)
    dw_hh = h_prev.reshape(steps_batch, -1).T @ dz_rows
    dvalid = None if valid is None else np.zeros(valid.shape, jax.dtypes.float0)
    return dw_hh, jnp.sum(dz_rows, axis=0), dzs, dh0, dc0, dvalid


_sequence.defvjp(_sequence_fwd, _sequence_bwd)


def fused_lstm(params, xs: jax.Array, carry, valid: jax.Array | None = None, remat: bool = False):
    """The LSTM over all steps, in time order, with the hand-written VJP above.

    Args:
      params: the LSTM's params ``w_ih [d, 4h]``, ``w_hh [h, 4h]``, ``b [4h]`` (no peepholes).
      xs: inputs ``[t, b, d]``, time-major.
      carry: the initial ``LSTMCarry(hidden [b, h], cell [b, h])``.
      valid: optional bool ``[t, b]``: False steps leave the carry unchanged and output 0.
      remat: save only the carries and recompute the gates in the backward pass.

    Returns:
      ``(final carry, ys [t, b, h])``, the final carry of the same type as ``carry``.
    """
    mask = None if valid is None else jnp.asarray(valid, bool)[..., None]
    us = xs @ params["w_ih"]
    h_t, c_t, ys = _sequence(params["w_hh"], params["b"], us, carry[0], carry[1], mask, remat)
    return type(carry)(h_t, c_t), ys
