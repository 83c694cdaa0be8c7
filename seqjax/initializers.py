"""Initialisers for recurrent weight matrices, selectable by name.

Every initialiser is ``init(key, (h, h), dtype) -> W`` for one square recurrent block. Gated cells
store their recurrent weights fused as ``[h, g*h]`` and initialise each ``[h, h]`` gate block
independently (``fused_blocks``), so "orthogonal" means every gate's block is orthogonal.

Names:
  orthogonal       W = Q from the QR decomposition of a Gaussian matrix (Saxe et al. 2014).
  identity         W = I (IRNN, Le et al. 2015).
  gaussian         W ~ N(0, 1), rescaled so that its spectral radius max|eig(W)| is exactly
                   ``spectral_radius``.
  Any of them times ``scale``: the lecture's "x3 explodes, x0.2 vanishes" is
  ``recurrent_init("identity", scale=3.0)`` on a linear RNN.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


def orthogonal(key, shape, dtype=jnp.float32):
    # QR in float32 (XLA:CPU has no bfloat16 QR), then cast.
    return jax.nn.initializers.orthogonal()(key, shape, jnp.float32).astype(dtype)


def identity(key, shape, dtype=jnp.float32):
    del key
    rows, cols = shape
    return jnp.eye(rows, cols, dtype=dtype)


def gaussian(spectral_radius: float = 1.0) -> Initializer:
    """N(0, 1) entries rescaled to the given spectral radius (computed exactly, not in expectation)."""

    def init(key, shape, dtype=jnp.float32):
        w = jax.random.normal(key, shape, jnp.float32)
        radius = jnp.max(jnp.abs(jnp.linalg.eigvals(w)))
        return (w * (spectral_radius / radius)).astype(dtype)

    return init


RECURRENT_INITS = ("orthogonal", "identity", "gaussian")


def recurrent_init(name: str = "orthogonal", scale: float = 1.0, spectral_radius: float = 1.0) -> Initializer:
    """The recurrent initialiser called ``name``, multiplied by ``scale``.

    Args:
      name: one of ``RECURRENT_INITS``.
      scale: a scalar multiplying the initialised matrix.
      spectral_radius: target radius for ``gaussian`` (ignored by the others).
    """
    if name == "orthogonal":
        base = orthogonal
    elif name == "identity":
        base = identity
    elif name == "gaussian":
        base = gaussian(spectral_radius)
    else:
        raise ValueError(f"unknown recurrent initialiser {name!r}; known: {', '.join(RECURRENT_INITS)}")
    if scale == 1.0:
        return base

    def scaled(key, shape, dtype=jnp.float32):
        return scale * base(key, shape, dtype)

    return scaled


def fused_blocks(init: Initializer, key, hidden_size: int, num_blocks: int, dtype=jnp.float32):
    """``[h, num_blocks*h]``: ``num_blocks`` independently initialised ``[h, h]`` blocks side by side."""
    keys = jax.random.split(key, num_blocks)
    return jnp.concatenate([init(k, (hidden_size, hidden_size), dtype) for k in keys], axis=1)


def lecun_normal(key, shape, dtype=jnp.float32):
    """Input-weight default, as in Flax: truncated normal with variance 1/fan_in."""
    return jax.nn.initializers.lecun_normal()(key, shape, dtype)


def uniform_leaves(key, params, bound: float):
    """``params`` with every leaf drawn again from U(-bound, bound), each leaf with its own key.

    PyTorch's defaults are this: ``nn.RNN``/``nn.LSTM``/``nn.GRU`` draw every weight and bias with bound 1/sqrt(h),
    ``nn.Linear`` its weight and bias with bound 1/sqrt(fan_in). (Where PyTorch adds two biases, b_ih + b_hh, a
    seqjax cell keeps one, drawn once.)
    """
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    drawn = [jax.random.uniform(k, x.shape, x.dtype, -bound, bound) for k, x in zip(keys, leaves, strict=True)]
    return jax.tree.unflatten(treedef, drawn)
