"""Scaled dot-product attention and multi-head attention (Vaswani et al. 2017) over plain-dict params.

Dimension legend: b batch, tq queries, tk keys, d features (``d_model``), h heads, k per-head query/key size
``d_k``, v per-head value size ``d_v``.

Masks are boolean, **True = may attend** (``seqjax.attention.masks``), broadcast to the attention weights
``[b, h, tq, tk]``. Masked weights are exactly 0.0; a query whose keys are all masked gets zero weights and a zero
output (never NaN, also in the gradient).

Params are laid out as Flax's ``MultiHeadDotProductAttention`` lays them out, so a Flax param tree of the same shapes
can be used directly. Inputs and params share a dtype (strict promotion); the softmax runs in float32. The attention
and the head projections are ``jax.jit``-wrapped (see ``seqjax.dense``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from seqjax import precision
from seqjax.dense import Params, fold_in_keys, glorot_uniform


@jax.jit
def scaled_dot_product_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Scaled dot-product attention.

        s = q k^T / sqrt(d_k)                         [..., tq, tk]
        w = softmax_j(s where mask else -big)  where mask else 0
        out = w v                                     [..., tq, dv]

    The logits and softmax are computed in float32 whatever the input dtype (bf16 inputs give
    float32 weights; ``out`` has ``v``'s dtype). Masked entries are replaced by the most negative
    float32 before the softmax (so a fully masked row is a finite uniform softmax, not NaN) and set
    to exactly 0.0 after it, so masked keys get weight 0.0, a fully masked row gives zero weights and
    zero output, and no gradient reaches masked logits.

    Args:
      q: queries ``[..., tq, dk]``.
      k: keys ``[..., tk, dk]``.
      v: values ``[..., tk, dv]``.
      mask: bool, broadcastable to ``[..., tq, tk]``; True = may attend. None attends everywhere.

    Returns:
      ``(out [..., tq, dv], weights [..., tq, tk] float32)``.
    """
    if mask is not None and mask.dtype != jnp.bool_:
        raise TypeError(f"mask must be bool (True = may attend), got {mask.dtype}")
    logits = precision.scores(q, k) * (1.0 / math.sqrt(q.shape[-1]))
    if mask is None:
        weights = jax.nn.softmax(logits, axis=-1)
    else:
        mask = jnp.broadcast_to(mask, logits.shape)
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
        weights = jnp.where(mask, jax.nn.softmax(logits, axis=-1), 0.0)
    out = jnp.einsum("...qk,...kv->...qv", weights.astype(v.dtype), v)
    return out, weights


def init_multi_head(
    key,
    d_model: int,
    num_heads: int,
    d_k: int | None = None,
    d_v: int | None = None,
    kv_dim: int | None = None,
    dtype=jnp.float32,
) -> Params:
    """Multi-head attention params; kernels Glorot uniform (fans of the [d_in, h*k] matrix), biases zero.

    Layout (Flax ``MultiHeadDotProductAttention``'s)::

        query: kernel [d_model, h, k], bias [h, k]
        key:   kernel [kv_dim, h, k],  bias [h, k]
        value: kernel [kv_dim, h, v],  bias [h, v]
        out:   kernel [h, v, d_model], bias [d_model]

    Args:
      key: PRNG key.
      d_model: query input and output size.
      num_heads: h.
      d_k: per-head query/key size; ``d_model // num_heads`` by default (``d_model`` must divide).
      d_v: per-head value size; ``d_k`` by default.
      kv_dim: key/value input size (cross-attention over a memory of another width); ``d_model`` by default.
      dtype: parameter dtype.
    """
    if d_k is None:
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}; pass d_k")
        d_k = d_model // num_heads
    d_v = d_k if d_v is None else d_v
    kv_dim = d_model if kv_dim is None else kv_dim
    k_q, k_k, k_v, k_o = fold_in_keys(key, 4)

    def projection(key, d_in, d_head):
        kernel = glorot_uniform(key, d_in, num_heads * d_head, (d_in, num_heads, d_head), dtype)
        return {"kernel": kernel, "bias": jnp.zeros((num_heads, d_head), dtype)}

    return {
        "query": projection(k_q, d_model, d_k),
        "key": projection(k_k, kv_dim, d_k),
        "value": projection(k_v, kv_dim, d_v),
        "out": {
            "kernel": glorot_uniform(k_o, num_heads * d_v, d_model, (num_heads, d_v, d_model), dtype),
            "bias": jnp.zeros((d_model,), dtype),
        },
    }


@jax.jit
def _heads(params: Params, x: jax.Array) -> jax.Array:
    """``[b, t, d] -> [b, h, t, k]``: one matrix product for all heads."""
    y = jnp.einsum("btd,dhk->bthk", x, params["kernel"])
    y = y + jnp.broadcast_to(params["bias"], y.shape)
    return jnp.swapaxes(y, 1, 2)


def multi_head_attention(
    params: Params,
    x_q: jax.Array,
    x_kv: jax.Array,
    mask: jax.Array | None = None,
    *,
    num_heads: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Multi-head attention; self-attention is ``x_q = x_kv``.

        head_i = Attention(x_q Wq_i + bq_i, x_kv Wk_i + bk_i, x_kv Wv_i + bv_i)
        out = sum_i head_i Wo_i + bo  ( = Concat(head_1..head_h) Wo + bo )

    Args:
      params: ``init_multi_head`` params.
      x_q: ``[b, tq, d_model]``.
      x_kv: ``[b, tk, kv_dim]``.
      mask: bool broadcastable to ``[b, h, tq, tk]`` (True = may attend), e.g. ``padding_mask``.
      num_heads: optional check; the head count is read from the kernels' shape.

    Returns:
      ``(out [b, tq, d_model], weights [b, h, tq, tk] float32)``.
    """
    h = params["query"]["kernel"].shape[1]
    if num_heads is not None and num_heads != h:
        raise ValueError(f"num_heads={num_heads} but the params have {h} heads")
    q, k, v = _heads(params["query"], x_q), _heads(params["key"], x_kv), _heads(params["value"], x_kv)
    heads, weights = scaled_dot_product_attention(q, k, v, mask)  # [b, h, tq, v]
    return _merge_heads(params["out"], heads), weights


@jax.jit
def _merge_heads(params: Params, heads: jax.Array) -> jax.Array:
    """``[b, h, t, v] -> [b, t, d]``: sum_i head_i Wo_i + bo, one contraction over (h, v)."""
    out = jnp.einsum("bhqv,hvd->bqd", heads, params["kernel"])
    return out + jnp.broadcast_to(params["bias"], out.shape)
