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

from seqjax import initializers
from seqjax.cells.base import Cell


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

    def init_carry(params, batch_shape):
        return jnp.zeros((*batch_shape, params["w_hh"].shape[0]), params["w_hh"].dtype)

    def project(params, xs):
        z = xs @ params["w_ih"]
        return z + jnp.broadcast_to(params["b"], z.shape)  # explicit: strict rank promotion

    def step(params, h, u):
        a_r, a_z, a_n = jnp.split(u, 3, axis=-1)
        if reset_after:
            hr, hz, hn = jnp.split(h @ params["w_hh"], 3, axis=-1)
            r = jax.nn.sigmoid(a_r + hr)
            z = jax.nn.sigmoid(a_z + hz)
            n = jnp.tanh(a_n + r * (hn + jnp.broadcast_to(params["b_hn"], hn.shape)))
        else:
            size = h.shape[-1]
            hr, hz = jnp.split(h @ params["w_hh"][:, : 2 * size], 2, axis=-1)
            r = jax.nn.sigmoid(a_r + hr)
            z = jax.nn.sigmoid(a_z + hz)
            n = jnp.tanh(a_n + (r * h) @ params["w_hh"][:, 2 * size :])
        h = (1.0 - z) * n + z * h
        return h, h

    return Cell(init_params, step, init_carry, project, name="gru" if reset_after else "gru_cho")
