"""Attention and the Transformer (Vaswani et al. 2017) as pure functions over plain-dict params.

One module per concern; every public name is re-exported here, so ``from seqjax import attention`` and
``attention.multi_head_attention(...)``, ``attention.dense(...)`` and so on read the same as from one module:

    dot_product   scaled dot-product attention, multi-head attention (Flax ``MultiHeadDotProductAttention`` layout)
    masks         length_mask, padding_mask, causal_mask, combine_masks: bool (True = real, may attend)
    positions     sinusoidal and learned position encodings
    transformer   encoder and decoder blocks (pre- or post-LN), EncoderConfig, the encoder stack
    seqjax.dense  (not attention, used by it) dense layers, layer norm, the feed-forward block, ACTIVATIONS

Dimension legend: b batch, t time (tq queries, tk keys), d features (``d_model``), h heads, k per-head query/key
size ``d_k``, v per-head value size ``d_v``, f feed-forward size ``d_ff``.

Params are nested dicts laid out as Flax's ``linen`` modules lay them out, so a Flax param tree of the same shapes
can be used directly. Inputs and params share a dtype (strict promotion): for bfloat16 compute cast both; softmax and
layer norm run in float32. The small building blocks (attention, head projections, masks, dense, layer norm,
feed-forward) are ``jax.jit``-wrapped, as ``jax.nn.softmax`` is: called eagerly they compile once per shape instead
of once per operation; inside a caller's ``jit`` they are inlined. The blocks and the encoder are plain functions
(their dropout rate and norm placement are Python values), to be jitted at the call site.
"""

from seqjax.attention.dot_product import init_multi_head, multi_head_attention, scaled_dot_product_attention
from seqjax.attention.masks import causal_mask, combine_masks, length_mask, padding_mask
from seqjax.attention.positions import init_learned_positions, learned_positions, sinusoidal_positions
from seqjax.attention.transformer import (
    EncoderConfig,
    decoder_block,
    embed,
    encoder_block,
    init_decoder_block,
    init_encoder_block,
    init_transformer_encoder,
    transformer_encoder,
)
from seqjax.dense import (
    ACTIVATIONS,
    Params,
    dense,
    feed_forward,
    glorot_uniform,
    init_dense,
    init_feed_forward,
    init_layer_norm,
    layer_norm,
)

__all__ = [
    "ACTIVATIONS",
    "EncoderConfig",
    "Params",
    "causal_mask",
    "combine_masks",
    "decoder_block",
    "dense",
    "embed",
    "encoder_block",
    "feed_forward",
    "glorot_uniform",
    "init_decoder_block",
    "init_dense",
    "init_encoder_block",
    "init_feed_forward",
    "init_layer_norm",
    "init_learned_positions",
    "init_multi_head",
    "init_transformer_encoder",
    "layer_norm",
    "learned_positions",
    "length_mask",
    "multi_head_attention",
    "padding_mask",
    "scaled_dot_product_attention",
    "sinusoidal_positions",
    "transformer_encoder",
]
