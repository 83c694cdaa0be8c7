"""LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

Gate order (i, f, g, o): input, forget, candidate ("gate gate"), output. With
z_t = x_t W_ih + b + h_{t-1} W_hh split into four [h] blocks:

    i_t = sigmoid(z_i + p_i * c_{t-1})
    f_t = sigmoid(z_f + p_f * c_{t-1})
    g_t = tanh(z_g)
    c_t = f_t * c_{t-1} + i_t * g_t
    o_t = sigmoid(z_o + p_o * c_t)
    h_t = o_t * tanh(c_t),       y_t = h_t

With ``proj_size=p`` (LSTMP, Sak et al. 2014; PyTorch's ``nn.LSTM(proj_size=p)``) the hidden state is
projected to p < h features, and the projection is what recurs and what is output:

    h_t = (o_t * tanh(c_t)) W_hr,      W_hr [h, p],      y_t = h_t [p],      z_t = x_t W_ih + b + h_{t-1} W_hh

so ``W_hh`` is ``[p, 4h]``; the cell state c_t keeps h features.

The peephole terms p (Gers & Schmidhuber 2000; diagonal weights ``p_i, p_f, p_o [h]``) exist only
with ``peephole=True``. ``forget_bias`` is the initial value of the forget-gate block of ``b``
(a learned bias, as in Jozefowicz et al. 2015), not a constant hidden in the step: with
``forget_bias=0`` the cell is exactly Flax's ``LSTMCell`` and PyTorch's ``nn.LSTM``.

Params: ``w_ih [d, 4h]``, ``w_hh [h, 4h]``, ``b [4h]`` (+ ``peephole [3, h]``); with ``proj_size=p``:
``w_hh [p, 4h]`` and ``w_hr [h, p]``.
Carry: ``LSTMCarry(hidden [*b, h], cell [*b, h])``; with ``proj_size=p``: ``LSTMCarry(hidden [*b, p], cell [*b, h])``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from seqjax import initializers, precision
from seqjax.cells import lstm_native
from seqjax.cells.base import Cell, fused_projection, hidden_zeros
from seqjax.cells.fused import Steps, fused_sequence


class LSTMCarry(NamedTuple):
    hidden: jax.Array
    cell: jax.Array


def lstm(
    forget_bias: float = 1.0,
    peephole: bool = False,
    recurrent_init: initializers.Initializer = initializers.orthogonal,
    input_init: initializers.Initializer = initializers.lecun_normal,
    proj_size: int | None = None,
    kernel: str = "auto",
) -> Cell:
    """Builds an LSTM cell, or with ``proj_size`` the LSTM with a projection layer (LSTMP).

    Args:
      forget_bias: initial forget-gate bias b_f (the other biases start at zero).
      peephole: add the diagonal peephole connections p_i, p_f, p_o (initialised to zero).
      recurrent_init: initialiser of each [h, h] gate block of ``W_hh`` (with ``proj_size=p``: the first p rows
        of each such block).
      input_init: initialiser of ``W_ih`` (and of ``W_hr``).
      proj_size: p, the features of the projected hidden state h_t (the output and the recurrent input); the
        cell's ``output_size``. ``None``: no projection.
      kernel: how the fused sequence runs its time loops on CPU (``seqjax.cells.lstm_native``): ``"auto"`` in the
        native kernel where it applies and can be built, ``"native"`` always there (``ValueError`` where not),
        ``"jax"`` in pure JAX.
    """
    lstm_native.check_kernel(kernel)
    if proj_size is not None and proj_size < 1:
        raise ValueError(f"lstm(proj_size={proj_size}): expected a positive number of projected features or None")

    def init_params(key, input_size: int, hidden_size: int, dtype=jnp.float32):
        k_ih, k_hh = jax.random.split(key)
        bias = jnp.zeros((4, hidden_size), dtype).at[1].set(forget_bias).reshape(4 * hidden_size)
        if proj_size is None:
            recurrent = {"w_hh": initializers.fused_blocks(recurrent_init, k_hh, hidden_size, 4, dtype)}
        elif proj_size > hidden_size:
            raise ValueError(f"lstm(proj_size={proj_size}): expected at most hidden_size = {hidden_size} features")
        else:
            k_hh, k_hr = jax.random.split(k_hh)
            blocks = initializers.fused_blocks(recurrent_init, k_hh, hidden_size, 4, dtype)  # [h, 4h]
            recurrent = {"w_hh": blocks[:proj_size], "w_hr": input_init(k_hr, (hidden_size, proj_size), dtype)}
        params = {"w_ih": input_init(k_ih, (input_size, 4 * hidden_size), dtype), **recurrent, "b": bias}
        if peephole:
            params["peephole"] = jnp.zeros((3, hidden_size), dtype)
        return params

    def init_carry(params, batch_shape):
        hidden = hidden_zeros(params, batch_shape)  # [*b, p] with a projection: w_hh is [p, 4h]
        if proj_size is None:
            return LSTMCarry(hidden, hidden)
        return LSTMCarry(hidden, jnp.zeros((*batch_shape, params["w_hr"].shape[0]), hidden.dtype))

    def step(params, carry: LSTMCarry, u):
        z = u.astype(carry.cell.dtype) + precision.dot(carry.hidden, params["w_hh"])
        z_i, z_f, z_g, z_o = jnp.split(z, 4, axis=-1)
        if peephole:
            p_i, p_f, p_o = params["peephole"].astype(carry.cell.dtype)
            z_i = z_i + jnp.broadcast_to(p_i, z_i.shape) * carry.cell
            z_f = z_f + jnp.broadcast_to(p_f, z_f.shape) * carry.cell
        c = jax.nn.sigmoid(z_f) * carry.cell + jax.nn.sigmoid(z_i) * jnp.tanh(z_g)
        if peephole:
            z_o = z_o + jnp.broadcast_to(p_o, z_o.shape) * c
        h = jax.nn.sigmoid(z_o) * jnp.tanh(c)
        if proj_size is not None:
            h = precision.dot(h, params["w_hr"])
        return LSTMCarry(h, c), h.astype(params["w_hh"].dtype)

    name = ("lstmp" if proj_size is not None else "lstm") + ("_peephole" if peephole else "")
    if peephole or proj_size is not None:  # the fused sequence knows neither: the scanned step
        return Cell(init_params, step, init_carry, fused_projection, name=name, output_size=proj_size)
    fused = lstm_native.with_native(FUSED, kernel)
    faster = lstm_native.runs_native(kernel)
    return Cell(init_params, step, init_carry, fused_projection, name=name, fused=fused, fused_faster=faster)


def _forward(small, carry: LSTMCarry, u, a):
    z = u + a
    i, f, g, o = _gates(z + jnp.broadcast_to(small["b"], z.shape))
    c = f * carry.cell + i * g
    return LSTMCarry(o * jnp.tanh(c), c), jnp.concatenate([i, f, g, o], axis=-1)


def _gates(z):
    z_i, z_f, z_g, z_o = jnp.split(z, 4, axis=-1)
    return jax.nn.sigmoid(z_i), jax.nn.sigmoid(z_f), jnp.tanh(z_g), jax.nn.sigmoid(z_o)


def _backward(small, saved, carry: LSTMCarry, new: LSTMCarry, d_new: LSTMCarry):
    """With z = u + a + b: dz for the gate activations (i, f, g, o) saved by ``_forward``::

    dc = dc_t + dh_t o (1 - tanh(c_t)^2)
    dz = [dc g i (1-i),  dc c_{t-1} f (1-f),  dc i (1-g^2),  dh_t tanh(c_t) o (1-o)],   dc_{t-1} = dc f
    """
    del small
    i, f, g, o = jnp.split(saved, 4, axis=-1)
    dh = d_new.hidden
    tanh_c = jnp.tanh(new.cell)
    dc = d_new.cell + dh * o * (1 - tanh_c * tanh_c)
    dz = jnp.concatenate(
        [dc * g * i * (1 - i), dc * carry.cell * f * (1 - f), dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)],
        axis=-1,
    )
    return LSTMCarry(jnp.zeros_like(dh), dc * f), dz, None


# The whole sequence with a hand-written VJP (seqjax.cells.fused), its loops in pure JAX; peepholes and projections
# take the scanned step.
FUSED = fused_sequence(Steps(_forward, _backward))
