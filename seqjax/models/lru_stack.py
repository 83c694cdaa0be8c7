"""A deep LRU network (Orvieto et al. 2023): an encoder, a stack of LRU sequence layers, a decoder at every step.

Dimension legend: b batch, t time, d input features, h model width (``d_model``), n LRU state size, o outputs.
The layout is that of the minimal-LRU reference code (Zucchet's ``lru/model.py``, after S5)::

    x_0 = u W_enc + b_enc                                          [b, t, h]
    for each layer l:
        z   = norm(x_{l-1})            (prenorm; else z = x_{l-1})
        z   = LRU(z)                   seqjax's lru cell, complex state [b, n], diagonal skip D * z
        z   = drop(gelu(z))
        z   = (z W_1 + b_1) * sigmoid(z W_2 + b_2)                 (GLU)
        x_l = x_{l-1} + drop(z)        (postnorm: x_l = norm(x_{l-1} + drop(z)))
    y = x_L W_dec + b_dec                                          [b, t, o]

``gelu`` is the tanh approximation (Flax's ``nn.gelu`` default). ``drop`` is inverted dropout with one mask per
sequence and feature, shared by every step (the reference's ``Dropout(broadcast_dims=[0])`` on a ``[t, h]``
example); each of a layer's two dropouts draws its own mask. ``norm`` is layer normalisation over ``h``
(``seqjax.dense.layer_norm``, eps 1e-6, learned scale and bias) or none. Dense kernels are LeCun-normal (truncated,
variance 1 / fan_in), biases zero, as Flax's ``nn.Dense``. The recurrence runs through ``seqjax.scan.unroll``:
the associative scan (``parallel=True``, as the reference) or ``jax.lax.scan``; the values are the same up to
float rounding.

Params: ``{"encoder": dense [d -> h], "layers": [{"norm", "lru", "glu_1": dense [h -> h], "glu_2"}, ...],
"decoder": dense [h -> o]}`` (``"norm"`` absent with ``norm="none"``); ``"lru"`` is the cell's params.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from seqjax import dense as dense_lib
from seqjax import initializers, random_bits
from seqjax.cells import Cell, lru
from seqjax.scan import unroll

NORMS = ("layer", "none")


class LRUStackConfig(NamedTuple):
    """The network's shape and options (defaults: the reference's ``run_train.py``, with layer norm)."""

    input_size: int  # d
    output_size: int  # o
    d_model: int = 256  # h
    state_size: int = 128  # n
    num_layers: int = 4
    dropout: float = 0.1
    norm: str = "layer"
    prenorm: bool = True
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 6.28  # the reference's 6.28, not 2 pi
    parallel: bool = True  # the associative scan; False: jax.lax.scan


def cell_of(model: LRUStackConfig) -> Cell:
    """The LRU of every layer: complex eigenvalues on the ring [r_min, r_max], the diagonal skip."""
    return lru("complex", r_min=model.r_min, r_max=model.r_max, max_phase=model.max_phase,
               state_size=model.state_size, skip="diagonal")  # fmt: skip


def init_dense(key: jax.Array, d_in: int, d_out: int) -> dict:
    """``{"kernel": [d_in, d_out] LeCun normal, "bias": [d_out] zeros}`` (Flax's ``nn.Dense``)."""
    return {"kernel": initializers.lecun_normal(key, (d_in, d_out)), "bias": jnp.zeros((d_out,), jnp.float32)}


def init_params(model: LRUStackConfig, key: jax.Array) -> dict:
    """The network's parameters (see the module docstring); a function of ``key`` alone."""
    if model.norm not in NORMS:
        raise ValueError(f"unknown norm {model.norm!r}; known: {', '.join(NORMS)}")
    cell, h = cell_of(model), model.d_model
    k_enc, k_dec, k_layers = jax.random.split(key, 3)
    layers = []
    for k_layer in jax.random.split(k_layers, model.num_layers):
        k_lru, k_1, k_2 = jax.random.split(k_layer, 3)
        layer = {"lru": cell.init_params(k_lru, h, h), "glu_1": init_dense(k_1, h, h), "glu_2": init_dense(k_2, h, h)}
        if model.norm == "layer":
            layer["norm"] = dense_lib.init_layer_norm(h)
        layers.append(layer)
    return {
        "encoder": init_dense(k_enc, model.input_size, h),
        "layers": layers,
        "decoder": init_dense(k_dec, h, model.output_size),
    }


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout on ``x [b, t, h]`` with one mask ``[b, 1, h]`` for every step; identity when ``key`` is None
    or ``rate`` is 0."""
    if key is None or rate == 0.0:
        return x
    keep = random_bits.bernoulli(key, 1.0 - rate, (x.shape[0], 1, x.shape[2]))
    return jnp.where(jnp.broadcast_to(keep, x.shape), x / (1.0 - rate), jnp.zeros_like(x))


def gelu(x: jax.Array) -> jax.Array:
    """``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``, Flax's default GELU."""
    return jax.nn.gelu(x, approximate=True)


def sequence_layer(model: LRUStackConfig, layer: dict, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """One layer, ``x [b, t, h] -> [b, t, h]`` (the module docstring's loop body); ``key``: dropout's, None: none."""
    k_1, k_2 = dense_lib.fold_in_keys(key, 2)
    norm = (lambda v: dense_lib.layer_norm(layer["norm"], v)) if model.norm == "layer" else (lambda v: v)
    z = norm(x) if model.prenorm else x
    z = unroll(cell_of(model), layer["lru"], z, parallel=model.parallel).outputs
    z = dropout(gelu(z), model.dropout, k_1)
    z = dense_lib.dense(layer["glu_1"], z) * jax.nn.sigmoid(dense_lib.dense(layer["glu_2"], z))
    x = x + dropout(z, model.dropout, k_2)
    return x if model.prenorm else norm(x)


def apply(model: LRUStackConfig, params: dict, xs: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """The network on ``xs [b, t, d]``: outputs ``[b, t, o]`` at every step. ``key``: dropout's (training), None:
    no dropout (evaluation)."""
    x = dense_lib.dense(params["encoder"], xs)
    for layer, k_layer in zip(params["layers"], dense_lib.fold_in_keys(key, len(params["layers"])), strict=True):
        x = sequence_layer(model, layer, x, k_layer)
    return dense_lib.dense(params["decoder"], x)
