"""GRU cell (Cho et al. 2014), with both placements of the reset gate.

Gate order (r, z, n): reset, update, candidate. With a_t = x_t W_ih + b split into [h] blocks
(a_r, a_z, a_n) and U = W_hh split likewise (U_r, U_z, U_n):

    r_t = sigmoid(a_r + h_{t-1} U_r)
    z_t = sigmoid(a_z + h_{t-1} U_z)
    reset_after=True  (cuDNN, PyTorch, Flax):  n_t = tanh(a_n + r_t * (h_{t-1} U_n + b_hn))
    reset_after=False (Cho et al. 2014):       n_t = tanh(a_n + (r_t * h_{t-1}) U_n)
    h_t = (1 - z_t) * n_t + z_t * h_{t-1},      y_t = h_t

``reset_after=True`` needs the extra bias ``b_hn`` inside the reset product and lets all three
recurrent products be one matrix multiply; ``reset_after=False`` needs a second, dependent matmul.

Params: ``w_ih [d, 3h]``, ``w_hh [h, 3h]``, ``b [3h]`` (+ ``b_hn [h]`` when reset_after).
Carry: ``h [*b, h]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqjax import initializers, precision
from seqjax.cells.base import Cell, fused_projection, hidden_zeros
from seqjax.cells.fused import Steps, fused_sequence


def gru(
    reset_after: bool = True,
    recurrent_init: initializers.Initializer = initializers.orthogonal,
    input_init: initializers.Initializer = initializers.lecun_normal,
) -> Cell:
    """Builds a GRU cell.

    Args:
      reset_after: apply the reset gate after the recurrent matmul (cuDNN/PyTorch/Flax) or before
        it (Cho et al. 2014).
      recurrent_init: initialiser of each [h, h] gate block of ``W_hh``.
      input_init: initialiser of ``W_ih``. Biases start at zero.
    """

    def init_params(key, input_size: int, hidden_size: int, dtype=jnp.float32):
        k_ih, k_hh = jax.random.split(key)
        params = {
            "w_ih": input_init(k_ih, (input_size, 3 * hidden_size), dtype),
            "w_hh": initializers.fused_blocks(recurrent_init, k_hh, hidden_size, 3, dtype),
            "b": jnp.zeros((3 * hidden_size,), dtype),
        }
        if reset_after:
            params["b_hn"] = jnp.zeros((hidden_size,), dtype)
        return params

    def step(params, h, u):
        a_r, a_z, a_n = jnp.split(u.astype(h.dtype), 3, axis=-1)
        if reset_after:
            hr, hz, hn = jnp.split(precision.dot(h, params["w_hh"]), 3, axis=-1)
            r = jax.nn.sigmoid(a_r + hr)
            z = jax.nn.sigmoid(a_z + hz)
            n = jnp.tanh(a_n + r * (hn + jnp.broadcast_to(params["b_hn"].astype(h.dtype), hn.shape)))
        else:
            size = h.shape[-1]
            hr, hz = jnp.split(precision.dot(h, params["w_hh"][:, : 2 * size]), 2, axis=-1)
            r = jax.nn.sigmoid(a_r + hr)
            z = jax.nn.sigmoid(a_z + hz)
            n = jnp.tanh(a_n + precision.dot(r * h, params["w_hh"][:, 2 * size :]))
        h = (1.0 - z) * n + z * h
        return h, h.astype(params["w_hh"].dtype)

    if not reset_after:  # the reset gate inside the product needs a second, dependent matmul: no fused path
        return Cell(init_params, step, hidden_zeros, fused_projection, name="gru_cho")
    return Cell(init_params, step, hidden_zeros, fused_projection, name="gru", fused=FUSED)


def _forward(small, h, u, a):
    x = u + jnp.broadcast_to(small["b"], u.shape)
    x_r, x_z, x_n = jnp.split(x, 3, axis=-1)
    a_r, a_z, a_n = jnp.split(a, 3, axis=-1)
    r = jax.nn.sigmoid(x_r + a_r)
    z = jax.nn.sigmoid(x_z + a_z)
    hn = a_n + jnp.broadcast_to(small["b_hn"], a_n.shape)
    n = jnp.tanh(x_n + r * hn)
    return (1.0 - z) * n + z * h, jnp.concatenate([r, z, n, hn], axis=-1)


def _backward(small, saved, h, new, dh):
    """With x = u + b and hn = a_n + b_hn, for the saved (r, z, n, hn)::

    dx_n = dh (1-z) (1-n^2),   dx_r = dx_n hn r (1-r),   dx_z = dh (h_{t-1} - n) z (1-z)
    du = [dx_r, dx_z, dx_n],   da = [dx_r, dx_z, dx_n r],   dh_{t-1} = dh z (+ da W_hh^T)
    """
    del small, new
    r, z, n, hn = jnp.split(saved, 4, axis=-1)
    dx_n = dh * (1.0 - z) * (1.0 - n * n)
    dx_r = dx_n * hn * r * (1.0 - r)
    dx_z = dh * (h - n) * z * (1.0 - z)
    return dh * z, jnp.concatenate([dx_r, dx_z, dx_n], axis=-1), jnp.concatenate([dx_r, dx_z, dx_n * r], axis=-1)


def _bias_grads(small, dus, das):
    size = small["b_hn"].shape[-1]
    return {"b": jnp.sum(dus, axis=(0, 1)), "b_hn": jnp.sum(das[..., 2 * size :], axis=(0, 1))}


# The 'reset after' GRU over a whole sequence with a hand-written VJP (seqjax.cells.fused).
FUSED = fused_sequence(Steps(_forward, _backward, _bias_grads))
