"""A decoder-only (GPT-style) causal Transformer language model, built from ``seqjax.attention``.

For tokens ``w_1 .. w_T`` (ids in ``[0, V)``, ``T <= context``), ``N`` pre-LN blocks of width ``d``::

    x^0_t    = drop(sqrt(d) E[w_t] + P[t])                 E [V, d] ~ N(0, 1/d),  P [context, d] learned
    x^l      = block_l(x^{l-1}, causal)                    l = 1..N, each [b, t, d]:
                 x = x + drop(MHA(LN(x), LN(x), causal)),  x = x + drop(FFN(LN(x)))
                 causal: position t attends to positions s <= t only
    logits_t = LN(x^N_t) W_out + b_out                     W_out [d, V]
    p(w_{t+1} | w_1..w_t) = softmax(logits_t)

with ``FFN(z) = gelu(z W_1 + b_1) W_2 + b_2``, ``W_1 [d, f]``, ``f = mlp_ratio * d``, and ``h`` heads
of size ``d / h``. Because every block masks the future, ``logits_t`` depends on ``w_1 .. w_t`` only,
so one pass over a window scores all of its ``T`` next-token predictions at once (teacher forcing).

Unlike the recurrent ``seqjax.models.lm`` there is no carry: the model reads at most ``context``
tokens (the learned position table has ``context`` rows), and whatever came before a window is
invisible to it. ``seqjax.models.lm_training`` says how windows are read in training and evaluation.

Parameters: ``{"encoder": attention.init_transformer_encoder params ("embedding" [V, d], "positions"
{"embedding" [context, d]}, "blocks" (N blocks), "final_norm"), "out": {"kernel" [d, V], "bias" [V]}}``.
``num_params`` gives their count in closed form.
"""

from __future__ import annotations

import dataclasses

import jax

from seqjax import attention


@dataclasses.dataclass(frozen=True)
class TransformerLMConfig:
    """A causal Transformer language model's shape and regularisation.

    Attributes:
      vocab_size: V.
      context: the longest window the model reads (rows of the learned position table).
      num_layers: N blocks.
      d_model: d, the width of the residual stream and the embeddings.
      num_heads: h; ``d_model`` must be divisible by it.
      mlp_ratio: the feed-forward size is ``f = mlp_ratio * d_model``.
      dropout: on the embeddings plus positions and on every sub-layer output before its residual add.
      activation: of the feed-forward blocks (``attention.ACTIVATIONS``).
    """

    vocab_size: int
    context: int
    num_layers: int = 2
    d_model: int = 128
    num_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0
    activation: str = "gelu"

    def __post_init__(self):
        sizes = (self.vocab_size, self.context, self.num_layers, self.d_model, self.num_heads, self.mlp_ratio)
        if min(sizes) < 1:
            raise ValueError(f"vocab_size, context, num_layers, d_model, num_heads and mlp_ratio must be >= 1: {self}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.activation not in attention.ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; known: {', '.join(attention.ACTIVATIONS)}")

    @property
    def d_ff(self) -> int:
        return self.mlp_ratio * self.d_model

    def encoder(self) -> attention.EncoderConfig:
        """The block stack as ``attention.transformer_encoder`` reads it (pre-LN, learned positions)."""
        return attention.EncoderConfig(
            num_layers=self.num_layers,
            d_model=self.d_model,
            num_heads=self.num_heads,
            d_ff=self.d_ff,
            vocab_size=self.vocab_size,
            positions="learned",
            max_len=self.context,
            pre_norm=True,
            dropout_rate=self.dropout,
            activation=self.activation,
            scale_embeddings=True,
        )


def init_params(config: TransformerLMConfig, key: jax.Array) -> dict:
    """The model's parameters (see the module docstring), float32; Glorot-uniform kernels, zero biases."""
    k_encoder, k_out = jax.random.split(key)
    return {
        "encoder": attention.init_transformer_encoder(k_encoder, config.encoder()),
        "out": attention.init_dense(k_out, config.d_model, config.vocab_size),
    }


def num_params(config: TransformerLMConfig) -> int:
    """The parameter count in closed form (equals the leaves' sizes summed)::

    V d + context d                       token and position tables
    + N (4 d^2 + 4 d                       Q, K, V, O kernels and biases
         + 2 d f + f + d                   feed-forward
         + 4 d)                            two layer norms
    + 2 d                                  final layer norm
    + d V + V                              output layer
    """
    v, d, f = config.vocab_size, config.d_model, config.d_ff
    block = 4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d
    return v * d + config.context * d + config.num_layers * block + 2 * d + d * v + v


def apply(config: TransformerLMConfig, params: dict, tokens: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """Logits for the next token at every position of a window.

    Args:
      config: the model.
      params: its parameters.
      tokens: ``[b, t]`` int ids, ``t <= config.context``.
      key: dropout key; ``None`` (evaluation, sampling) applies no dropout.

    Returns:
      ``logits [b, t, V]``; ``logits[:, s]`` depends on ``tokens[:, :s + 1]`` only.
    """
    t = tokens.shape[1]
    if t > config.context:
        raise ValueError(f"a window of {t} tokens is longer than the model's context of {config.context}")
    hidden = attention.transformer_encoder(
        params["encoder"], tokens, config=config.encoder(), key=key, mask=attention.causal_mask(t)
    )  # [b, t, d], final layer norm applied
    return attention.dense(params["out"], hidden)
