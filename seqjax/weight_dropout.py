"""Dropout on weights rather than activations: DropConnect on ``W_hh`` and embedding dropout (AWD-LSTM).

Merity, Keskar & Socher (2018), "Regularizing and Optimizing LSTM Language Models", drop

- **the recurrent weights** (their ``WeightDrop``, Wan et al. 2013's DropConnect): every entry of ``W_hh``
  kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``, one mask for the whole forward pass, so every
  time step and every sequence of the batch sees the same dropped matrix::

      W~_hh = (m / (1 - p)) * W_hh,   m ~ Bernoulli(1 - p)^{[h, g h]},   h_t = cell(h_{t-1}, x_t; W~_hh)

- **word types of the embedding** (their ``embedded_dropout``, Gal & Ghahramani 2016): whole rows of
  ``E [v, e]`` dropped with one mask for the batch, so a dropped word is zeros wherever it occurs::

      E~ = (r / (1 - p)) * E,   r ~ Bernoulli(1 - p)^{[v, 1]},   x_t = E~[w_t]

Both transform parameters before the unroll, so they work for any cell and need no change to one; a ``None``
key (evaluation) or a zero rate returns the weights unchanged.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from seqjax import random_bits
from seqjax.cells.base import Cell
from seqjax.layers import dropout

RECURRENT_WEIGHTS = "w_hh"


def has_recurrent_weights(cell: Cell) -> bool:
    """Whether ``cell``'s params are a dict with a ``w_hh`` matrix (rnn, lstm, gru; not the linear cells)."""
    shapes = jax.eval_shape(lambda key: cell.init_params(key, 1, 1), jax.random.key(0))
    return isinstance(shapes, dict) and RECURRENT_WEIGHTS in shapes


def drop_connect(params: dict[str, Any], rate: float, key: jax.Array | None) -> dict[str, Any]:
    """``params`` with ``w_hh [h, g h]`` dropped entry by entry (inverted scaling), the rest as they are.

    One Bernoulli(1 - rate) mask of ``w_hh``'s shape: the unroll that uses the result applies the same dropped
    matrix at every step and to every sequence.
    """
    if key is None or rate == 0.0:
        return params
    if not isinstance(params, dict) or RECURRENT_WEIGHTS not in params:
        raise ValueError(f"DropConnect needs a cell with a {RECURRENT_WEIGHTS!r} parameter")
    return {**params, RECURRENT_WEIGHTS: dropout(params[RECURRENT_WEIGHTS], rate, key)}


def embed_with_dropout(embedding: jax.Array, tokens: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """``E~[tokens]``: the rows of ``embedding [v, e]`` for ``tokens [...]``, whole word types dropped.

    One Bernoulli(1 - rate) draw per word type (``[v]``) for all of ``tokens``, kept rows scaled by
    ``1 / (1 - rate)``; equal to masking ``E`` and then looking up, without forming the ``[v, e]`` product.
    Returns ``[..., e]``.
    """
    rows = embedding[tokens]
    if key is None or rate == 0.0:
        return rows
    keep = random_bits.bernoulli(key, 1.0 - rate, embedding.shape[:1])[tokens]  # [...]
    return jnp.where(keep[..., None], rows / (1.0 - rate), jnp.zeros((), rows.dtype))
