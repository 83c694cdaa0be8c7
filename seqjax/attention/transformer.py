"""The Transformer (Vaswani et al. 2017): encoder and decoder blocks and the encoder stack, as plain functions.

Dimension legend: b batch, t time (s memory positions), d features (``d_model``), h heads, f feed-forward size
``d_ff``.

Built from ``seqjax.dense`` (dense, layer norm, feed-forward), ``dot_product`` (multi-head attention), ``masks`` and
``positions``. The blocks and the encoder are not jitted (their dropout rate and norm placement are Python values):
jit them at the call site.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from seqjax.attention.dot_product import init_multi_head, multi_head_attention
from seqjax.attention.masks import causal_mask, combine_masks, length_mask, padding_mask
from seqjax.attention.positions import init_learned_positions, learned_positions, sinusoidal_positions
from seqjax.dense import Params, feed_forward, fold_in_keys, init_feed_forward, init_layer_norm, layer_norm
from seqjax.layers import dropout

# --------------------------------------------------------------------------- blocks


def _sublayer(norm: Params, x: jax.Array, f, pre_norm: bool, rate: float, key) -> jax.Array:
    """One residual sub-layer: pre-LN ``x + drop(f(LN(x)))`` or post-LN ``LN(x + drop(f(x)))``."""
    if pre_norm:
        return x + dropout(f(layer_norm(norm, x)), rate, key)
    return layer_norm(norm, x + dropout(f(x), rate, key))


def init_encoder_block(key, d_model: int, num_heads: int, d_ff: int, dtype=jnp.float32) -> Params:
    """``{"attention": init_multi_head, "norm_attention", "feed_forward", "norm_feed_forward": init_layer_norm}``."""
    k_att, k_ff = fold_in_keys(key, 2)
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
    k_att, k_ff = fold_in_keys(key, 2)

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
    k_self, k_cross, k_ff = fold_in_keys(key, 3)
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
    k_self, k_cross, k_ff = fold_in_keys(key, 3)
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
    k_emb, k_pos, *block_keys = fold_in_keys(key, 2 + config.num_layers)
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
    k_embed, *block_keys = fold_in_keys(key, 1 + config.num_layers)
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
        x = jnp.where(length_mask(lengths, t)[:, :, None], x, jnp.zeros_like(x))
    return x
