"""Dense layers, layer normalisation and the position-wise feed-forward block, as pure functions over plain-dict params.

Dimension legend: d features (``d_model``), f feed-forward size ``d_ff``.

Params are nested dicts laid out as Flax's ``linen`` modules lay them out (``Dense``, ``LayerNorm``), so a Flax param
tree of the same shapes can be used directly. Inputs and params share a dtype (strict promotion): for bfloat16
compute cast both; layer norm runs in float32.

``dense``, ``layer_norm`` and ``feed_forward`` are ``jax.jit``-wrapped, as ``jax.nn.softmax`` is: called eagerly they
compile once per shape instead of once per operation; inside a caller's ``jit`` they are inlined. The Transformer
(``seqjax.attention``) is built from them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

Params = dict

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # exact: x Phi(x) with the erf (BERT)
}


def fold_in_keys(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    """``n`` independent keys ``fold_in(key, i)``, or ``n`` Nones for the deterministic pass.

    ``fold_in`` rather than ``split(key, n)``: one compiled operation whatever ``n``, which keeps
    eager (un-jitted) use cheap; inside ``jit`` the two cost the same.
    """
    return [None] * n if key is None else [jax.random.fold_in(key, i) for i in range(n)]


def glorot_uniform(key, fan_in: int, fan_out: int, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """U(-a, a) with ``a = sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio 2010), reshaped to ``shape``.

    Fans are those of the matrix ``[fan_in, fan_out]`` the kernel acts as (all heads together).
    """
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, (fan_in, fan_out), dtype, -limit, limit).reshape(shape)


def init_dense(key, d_in: int, d_out: int, dtype=jnp.float32) -> Params:
    """``{"kernel": [d_in, d_out] Glorot uniform, "bias": [d_out] zeros}``."""
    return {"kernel": glorot_uniform(key, d_in, d_out, (d_in, d_out), dtype), "bias": jnp.zeros((d_out,), dtype)}


@jax.jit
def dense(params: Params, x: jax.Array) -> jax.Array:
    """``x W + b``: ``[..., d_in] -> [..., d_out]``."""
    y = x @ params["kernel"]
    return y + jnp.broadcast_to(params["bias"], y.shape)


def init_layer_norm(d: int, dtype=jnp.float32) -> Params:
    """``{"scale": ones [d], "bias": zeros [d]}``."""
    return {"scale": jnp.ones((d,), dtype), "bias": jnp.zeros((d,), dtype)}


@jax.jit
def layer_norm(params: Params, x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Layer normalisation (Ba et al. 2016) over the last axis, computed in float32.

        mu = mean(x),  var = mean((x - mu)^2)   (biased, over d)
        y = (x - mu) / sqrt(var + eps) * scale + bias

    Args:
      params: ``init_layer_norm`` params (``scale [d]``, ``bias [d]``).
      x: ``[..., d]``.
      eps: added to the variance (Flax's default, 1e-6; PyTorch's is 1e-5).

    Returns:
      ``[..., d]`` in ``x``'s dtype.
    """
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    centred = x32 - mean
    var = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
    y = centred * jax.lax.rsqrt(var + eps)
    scale = jnp.broadcast_to(params["scale"].astype(jnp.float32), y.shape)
    bias = jnp.broadcast_to(params["bias"].astype(jnp.float32), y.shape)
    return (y * scale + bias).astype(x.dtype)


def init_feed_forward(key, d_model: int, d_ff: int, dtype=jnp.float32) -> Params:
    """``{"dense_1": [d_model -> d_ff], "dense_2": [d_ff -> d_model]}``, Glorot uniform kernels, zero biases."""
    k_1, k_2 = fold_in_keys(key, 2)
    return {"dense_1": init_dense(k_1, d_model, d_ff, dtype), "dense_2": init_dense(k_2, d_ff, d_model, dtype)}


@functools.partial(jax.jit, static_argnames="activation")
def feed_forward(params: Params, x: jax.Array, activation: str = "relu") -> jax.Array:
    """Position-wise feed-forward: ``FFN(x) = act(x W1 + b1) W2 + b2``, ``[..., d] -> [..., d]``.

    Args:
      activation: ``"relu"`` (Vaswani et al.) or ``"gelu"`` (exact ``x Phi(x)``, BERT; not the tanh
        approximation).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
    return dense(params["dense_2"], ACTIVATIONS[activation](dense(params["dense_1"], x)))
