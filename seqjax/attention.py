"""Attention and the Transformer (Vaswani et al. 2017) as pure functions over plain-dict params.

Dimension legend: b batch, t time (tq queries, tk keys), d features (``d_model``), h heads,
k per-head query/key size ``d_k``, v per-head value size ``d_v``, f feed-forward size ``d_ff``.

Masks are boolean, **True = may attend**, and broadcast to the attention weights ``[b, h, tq, tk]``:

    padding_mask(lengths, t)   [b, 1, 1, t]   key j is visible iff j < lengths[b]
    causal_mask(t)             [1, 1, t, t]   query i sees key j iff j <= i
    combine_masks(m1, m2, ...) logical and     e.g. decoder self-attention over padded targets

Masked weights are exactly 0.0; a query whose keys are all masked gets zero weights and a zero
output (never NaN, also in the gradient). Padded *queries* are not masked by a key mask; their
outputs are finite but meaningless, and ``transformer_encoder`` zeroes them.

Params are nested dicts laid out as Flax's ``linen`` modules lay them out (``MultiHeadDotProductAttention``,
``LayerNorm``, ``Dense``), so a Flax param tree of the same shapes can be used directly. Inputs and params
share a dtype (strict promotion): for bfloat16 compute cast both; softmax and layer norm run in float32.

The small building blocks (attention, head projections, masks, dense, layer norm, feed-forward) are
``jax.jit``-wrapped, as ``jax.nn.softmax`` is: called eagerly they compile once per shape instead of once
per operation; inside a caller's ``jit`` they are inlined. The blocks and the encoder are plain functions
(their dropout rate and norm placement are Python values), to be jitted at the call site.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import precision
from seqjax.layers import dropout

Params = dict

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # exact: x Phi(x) with the erf (BERT)
}


# --------------------------------------------------------------------------- scaled dot-product attention


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


# --------------------------------------------------------------------------- masks


@functools.partial(jax.jit, static_argnames="t")
def padding_mask(lengths: jax.Array, t: int) -> jax.Array:
    """``[b, 1, 1, t]`` bool: key position j of example b is visible iff ``j < lengths[b]``.

    Args:
      lengths: ``[b]`` int, true lengths of right-padded sequences.
      t: padded length.
    """
    lengths = jnp.asarray(lengths)
    valid = jnp.arange(t)[None, :] < lengths[:, None]  # [b, t]
    return valid[:, None, None, :]


@functools.partial(jax.jit, static_argnames="t")
def causal_mask(t: int) -> jax.Array:
    """``[1, 1, t, t]`` bool: query i may attend to key j iff ``j <= i``."""
    return jnp.tril(jnp.ones((t, t), jnp.bool_))[None, None]


def combine_masks(*masks: jax.Array | None) -> jax.Array | None:
    """Logical and of the given masks, broadcast together; ``None`` entries are skipped.

    ``combine_masks(padding_mask(lengths, t), causal_mask(t))`` is ``[b, 1, t, t]``: causal and no
    padded keys. Returns None when every mask is None.
    """
    present = [m for m in masks if m is not None]
    if not present:
        return None
    shape = jnp.broadcast_shapes(*(m.shape for m in present))
    combined = jnp.broadcast_to(present[0], shape)
    for m in present[1:]:
        combined = jnp.logical_and(combined, jnp.broadcast_to(m, shape))
    return combined


# --------------------------------------------------------------------------- dense, dropout, layer norm


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


def _keys(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    """``n`` independent keys ``fold_in(key, i)``, or ``n`` Nones for the deterministic pass.

    ``fold_in`` rather than ``split(key, n)``: one compiled operation whatever ``n``, which keeps
    eager (un-jitted) use cheap; inside ``jit`` the two cost the same.
    """
    return [None] * n if key is None else [jax.random.fold_in(key, i) for i in range(n)]


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


# --------------------------------------------------------------------------- multi-head attention


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
    k_q, k_k, k_v, k_o = _keys(key, 4)

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


# --------------------------------------------------------------------------- positions


def sinusoidal_positions(t: int, d: int, dtype=jnp.float32) -> jax.Array:
    """``[t, d]`` fixed encodings (Vaswani et al. 2017, interleaved sin/cos as in the paper).

        PE[pos, 2i]   = sin(pos / 10000^(2i / d))
        PE[pos, 2i+1] = cos(pos / 10000^(2i / d))

    Computed in float64 NumPy at trace time (a constant), then cast to ``dtype``. An odd ``d`` ends
    with a sin column.
    """
    pos = np.arange(t, dtype=np.float64)[:, None]
    two_i = (np.arange(d) // 2 * 2).astype(np.float64)[None, :]
    angle = pos / np.power(10000.0, two_i / d)
    pe = np.where(np.arange(d)[None, :] % 2 == 0, np.sin(angle), np.cos(angle))
    return jnp.asarray(pe, dtype)


def init_learned_positions(key, max_len: int, d: int, stddev: float = 0.02, dtype=jnp.float32) -> Params:
    """``{"embedding": [max_len, d] ~ N(0, stddev^2)}`` (BERT / GPT-2 style learned positions)."""
    return {"embedding": stddev * jax.random.normal(key, (max_len, d), dtype)}


def learned_positions(params: Params, t: int) -> jax.Array:
    """``[t, d]``: the first ``t`` rows of the learned table (``t <= max_len``)."""
    max_len = params["embedding"].shape[0]
    if t > max_len:
        raise ValueError(f"sequence length {t} exceeds the learned positions' max_len {max_len}")
    return params["embedding"][:t]


# --------------------------------------------------------------------------- feed-forward


def init_feed_forward(key, d_model: int, d_ff: int, dtype=jnp.float32) -> Params:
    """``{"dense_1": [d_model -> d_ff], "dense_2": [d_ff -> d_model]}``, Glorot uniform kernels, zero biases."""
    k_1, k_2 = _keys(key, 2)
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


# --------------------------------------------------------------------------- blocks


def _sublayer(norm: Params, x: jax.Array, f, pre_norm: bool, rate: float, key) -> jax.Array:
    """One residual sub-layer: pre-LN ``x + drop(f(LN(x)))`` or post-LN ``LN(x + drop(f(x)))``."""
    if pre_norm:
        return x + dropout(f(layer_norm(norm, x)), rate, key)
    return layer_norm(norm, x + dropout(f(x), rate, key))


def init_encoder_block(key, d_model: int, num_heads: int, d_ff: int, dtype=jnp.float32) -> Params:
    """``{"attention": init_multi_head, "norm_attention", "feed_forward", "norm_feed_forward": init_layer_norm}``."""
    k_att, k_ff = _keys(key, 2)
    return {
        "attention": init_multi_head(k_att, d_model, num_heads, dtype=dtype),
        "norm_attention": init_layer_norm(d_model, dtype),
        "feed_forward": init_feed_forward(k_ff, d_model, d_ff, dtype),
        "norm_feed_forward": init_layer_norm(d_model, dtype),
    }


def encoder_block(
    params: Params,
    x: jax.Array,
    mask: jax.Array | None,
    *,
    num_heads: int | None = None,
    pre_norm: bool = True,
    dropout_rate: float = 0.0,
    key: jax.Array | None = None,
    activation: str = "relu",
) -> jax.Array:
    """Transformer encoder block: self-attention then feed-forward, each a residual sub-layer.

    Pre-LN (``pre_norm=True``; GPT-2, ViT, most modern code)::

        x = x + drop(MHA(LN(x), LN(x), mask)),   x = x + drop(FFN(LN(x)))

    Post-LN (``pre_norm=False``; Vaswani et al. 2017)::

        x = LN(x + drop(MHA(x, x, mask))),       x = LN(x + drop(FFN(x)))

    Args:
      params: ``init_encoder_block`` params.
      x: ``[b, t, d]``.
      mask: bool broadcastable to ``[b, h, t, t]``, True = may attend (``padding_mask``; with
        ``causal_mask`` for a causal encoder); None attends everywhere.
      num_heads: optional check against the params.
      pre_norm: pre-LN or post-LN, as above.
      dropout_rate: dropout on each sub-layer's output before the residual add.
      key: PRNG key for dropout; None = deterministic (evaluation).
      activation: of the feed-forward block (``ACTIVATIONS``).

    Returns:
      ``[b, t, d]``.
    """
    k_att, k_ff = _keys(key, 2)

    def attend(z):
        return multi_head_attention(params["attention"], z, z, mask, num_heads=num_heads)[0]

    x = _sublayer(params["norm_attention"], x, attend, pre_norm, dropout_rate, k_att)
    ffn = lambda z: feed_forward(params["feed_forward"], z, activation)
    return _sublayer(params["norm_feed_forward"], x, ffn, pre_norm, dropout_rate, k_ff)


def init_decoder_block(
    key, d_model: int, num_heads: int, d_ff: int, memory_dim: int | None = None, dtype=jnp.float32
) -> Params:
    """``{"self_attention", "norm_self_attention", "cross_attention", "norm_cross_attention", "feed_forward",
    "norm_feed_forward"}``; the cross-attention reads a memory of width ``memory_dim`` (``d_model`` by default)."""
    k_self, k_cross, k_ff = _keys(key, 3)
    return {
        "self_attention": init_multi_head(k_self, d_model, num_heads, dtype=dtype),
        "norm_self_attention": init_layer_norm(d_model, dtype),
        "cross_attention": init_multi_head(k_cross, d_model, num_heads, kv_dim=memory_dim, dtype=dtype),
        "norm_cross_attention": init_layer_norm(d_model, dtype),
        "feed_forward": init_feed_forward(k_ff, d_model, d_ff, dtype),
        "norm_feed_forward": init_layer_norm(d_model, dtype),
    }


def decoder_block(
    params: Params,
    y: jax.Array,
    memory: jax.Array,
    self_mask: jax.Array | None,
    memory_mask: jax.Array | None,
    *,
    num_heads: int | None = None,
    pre_norm: bool = True,
    dropout_rate: float = 0.0,
    key: jax.Array | None = None,
    activation: str = "relu",
) -> jax.Array:
    """Transformer decoder block: causal self-attention, cross-attention over ``memory``, feed-forward.

    Pre-LN::

        y = y + drop(MHA(LN(y), LN(y), causal & self_mask))
        y = y + drop(MHA(LN(y), memory, memory_mask))
        y = y + drop(FFN(LN(y)))

    Post-LN: ``y = LN(y + drop(sublayer(y)))`` for each of the three. The memory is used as given
    (an encoder's output, already normalised by it).

    Args:
      params: ``init_decoder_block`` params.
      y: targets so far ``[b, t, d]``.
      memory: encoder output ``[b, s, memory_dim]``.
      self_mask: bool broadcastable to ``[b, h, t, t]`` (e.g. ``padding_mask(target_lengths, t)``).
        The causal mask is always applied on top of it, so None means "causal only".
      memory_mask: bool broadcastable to ``[b, h, t, s]`` (e.g. ``padding_mask(source_lengths, s)``);
        None attends to the whole memory.
      num_heads, pre_norm, dropout_rate, key, activation: as in ``encoder_block``.

    Returns:
      ``[b, t, d]``.
    """
    k_self, k_cross, k_ff = _keys(key, 3)
    causal = combine_masks(causal_mask(y.shape[1]), self_mask)

    def self_attend(z):
        return multi_head_attention(params["self_attention"], z, z, causal, num_heads=num_heads)[0]

    def cross_attend(z):
        return multi_head_attention(params["cross_attention"], z, memory, memory_mask, num_heads=num_heads)[0]

    y = _sublayer(params["norm_self_attention"], y, self_attend, pre_norm, dropout_rate, k_self)
    y = _sublayer(params["norm_cross_attention"], y, cross_attend, pre_norm, dropout_rate, k_cross)
    ffn = lambda z: feed_forward(params["feed_forward"], z, activation)
    return _sublayer(params["norm_feed_forward"], y, ffn, pre_norm, dropout_rate, k_ff)


# --------------------------------------------------------------------------- encoder stack


class EncoderConfig(NamedTuple):
    """Hyper-parameters of ``transformer_encoder`` (bind with ``functools.partial``; not a jit argument).

    Attributes:
      num_layers: N encoder blocks.
      d_model, num_heads, d_ff: block sizes.
      vocab_size: size of the token embedding; None when the encoder is fed embeddings ``[b, t, d]``.
      positions: ``"sinusoidal"`` (fixed) or ``"learned"`` (a ``[max_len, d]`` table, sliced).
      max_len: rows of the learned table (required for ``"learned"``).
      pre_norm: pre-LN blocks and a final layer norm (True) or post-LN blocks (False).
      dropout_rate: on embeddings + positions and on every sub-layer output (with a key).
      activation: of the feed-forward blocks.
      scale_embeddings: multiply token embeddings by sqrt(d_model) before adding positions (Vaswani
        et al. 3.4; the table starts at N(0, 1/d_model) so the scaled embeddings have unit variance).
    """

    num_layers: int
    d_model: int
    num_heads: int
    d_ff: int
    vocab_size: int | None = None
    positions: str = "sinusoidal"
    max_len: int | None = None
    pre_norm: bool = True
    dropout_rate: float = 0.0
    activation: str = "relu"
    scale_embeddings: bool = True


def init_transformer_encoder(key, config: EncoderConfig, dtype=jnp.float32) -> Params:
    """Encoder params.

    ``{"embedding": [vocab, d] (if vocab_size), "positions": {"embedding": [max_len, d]} (if learned),
    "blocks": (init_encoder_block, ...) one per layer, "final_norm": init_layer_norm (if pre_norm)}``.
    """
    if config.positions not in ("sinusoidal", "learned"):
        raise ValueError(f"positions must be 'sinusoidal' or 'learned', got {config.positions!r}")
    k_emb, k_pos, *block_keys = _keys(key, 2 + config.num_layers)
    params: Params = {
        "blocks": tuple(init_encoder_block(k, config.d_model, config.num_heads, config.d_ff, dtype) for k in block_keys)
    }
    if config.vocab_size is not None:
        std = config.d_model**-0.5 if config.scale_embeddings else 1.0
        params["embedding"] = std * jax.random.normal(k_emb, (config.vocab_size, config.d_model), dtype)
    if config.positions == "learned":
        if config.max_len is None:
            raise ValueError("learned positions need config.max_len")
        params["positions"] = init_learned_positions(k_pos, config.max_len, config.d_model, dtype=dtype)
    if config.pre_norm:
        params["final_norm"] = init_layer_norm(config.d_model, dtype)
    return params


def embed(params: Params, inputs: jax.Array, *, config: EncoderConfig) -> jax.Array:
    """Token ids ``[b, t]`` (looked up, times sqrt(d) if ``scale_embeddings``) or embeddings ``[b, t, d]``,
    plus positions: ``[b, t, d]``."""
    if inputs.ndim == 2:
        x = jnp.take(params["embedding"], inputs, axis=0)
        if config.scale_embeddings:
            x = x * math.sqrt(config.d_model)
    else:
        x = inputs
    t = x.shape[1]
    if config.positions == "learned":
        pe = learned_positions(params["positions"], t)
    else:
        pe = sinusoidal_positions(t, x.shape[-1])
    return x + jnp.broadcast_to(pe.astype(x.dtype), x.shape)


def transformer_encoder(
    params: Params,
    inputs: jax.Array,
    lengths: jax.Array | None = None,
    *,
    config: EncoderConfig,
    key: jax.Array | None = None,
    mask: jax.Array | None = None,
) -> jax.Array:
    """N encoder blocks over embedded inputs with positions; padded positions of the output are zero.

        x_0 = drop(embed(inputs) + PE)
        x_l = encoder_block(x_{l-1}, padding_mask(lengths) & mask)       l = 1..N
        out = LN(x_N) if pre_norm else x_N;   out[b, t] = 0 for t >= lengths[b]

    Args:
      params: ``init_transformer_encoder(key, config)`` params.
      inputs: token ids ``[b, t]`` int, or embeddings ``[b, t, d_model]``.
      lengths: ``[b]`` int, true lengths of right-padded sequences; None = all ``t`` valid.
        Padded keys are masked, so a sequence's outputs do not depend on its padding or batch mates.
      config: the config the params were made with.
      key: PRNG key for dropout; None = deterministic (evaluation).
      mask: an extra bool mask broadcastable to ``[b, h, t, t]`` (True = may attend), combined with the
        padding mask: ``causal_mask(t)`` makes the stack a decoder-only (GPT-style) causal model.

    Returns:
      ``[b, t, d_model]``.
    """
    if config.pre_norm != ("final_norm" in params):
        raise ValueError(f"config.pre_norm={config.pre_norm} does not match the params (init with the same config)")
    k_embed, *block_keys = _keys(key, 1 + config.num_layers)
    x = dropout(embed(params, inputs, config=config), config.dropout_rate, k_embed)
    t = x.shape[1]
    mask = combine_masks(None if lengths is None else padding_mask(lengths, t), mask)
    for block, k in zip(params["blocks"], block_keys, strict=True):
        x = encoder_block(
            block,
            x,
            mask,
            num_heads=config.num_heads,
            pre_norm=config.pre_norm,
            dropout_rate=config.dropout_rate,
            key=k,
            activation=config.activation,
        )
    if config.pre_norm:
        x = layer_norm(params["final_norm"], x)
    if lengths is not None:
        valid = jnp.arange(t)[None, :] < jnp.asarray(lengths)[:, None]  # [b, t]
        x = jnp.where(valid[:, :, None], x, jnp.zeros_like(x))
    return x
