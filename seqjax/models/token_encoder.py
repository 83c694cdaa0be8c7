"""Self-attention over per-token features: the Transformer in place of a (bi)RNN stack.

The sentiment classifier and the tagger build a feature vector per token (word embedding, and for the
tagger a character feature and a given tag) and then read the sentence with a recurrent stack. With
``encoder="transformer"`` they read it with this one instead::

    z_s   = LN_in(x_s W_in + b_in)                     x [b, t, i] -> z [b, t, d];  W_in [i, d]
    out   = transformer_encoder(z, lengths)            N pre-LN blocks, sinusoidal positions, h heads,
                                                       feed-forward f = mlp_ratio d, padded keys masked

``LN_in`` puts the projected features on the scale of the sinusoidal positions added next (both of
order 1 per feature), whatever the scale the embeddings were initialised with. Every position attends
to every valid position on both sides, so no ``bidirectional`` flag applies; outputs at padded
positions are zero and, because padded keys are masked, a sentence's outputs do not depend on its
padding or its batch mates.

Parameters: ``{"in": {"kernel": [i, d], "bias": [d]}, "in_norm": {"scale": [d], "bias": [d]},
"encoder": attention.init_transformer_encoder params ("blocks", "final_norm")}``.
"""

from __future__ import annotations

import dataclasses

import jax

from seqjax import attention

ENCODERS = ("rnn", "transformer")


@dataclasses.dataclass(frozen=True)
class TokenEncoderConfig:
    """The self-attention stack's shape.

    Attributes:
      num_layers: N blocks.
      d_model: d, the width of every block (the classifier's and tagger's ``hidden_size``).
      num_heads: h; ``d_model`` must be divisible by it.
      mlp_ratio: the feed-forward size is ``mlp_ratio * d_model``.
      dropout: on the embedded inputs plus positions and on every sub-layer output.
    """

    num_layers: int
    d_model: int
    num_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0

    def __post_init__(self):
        if min(self.num_layers, self.d_model, self.num_heads, self.mlp_ratio) < 1:
            raise ValueError(f"num_layers, d_model, num_heads and mlp_ratio must be >= 1: {self}")
        if self.d_model % self.num_heads:
            raise ValueError(f"hidden size d_model={self.d_model} is not divisible by num_heads={self.num_heads}")

    def encoder(self) -> attention.EncoderConfig:
        return attention.EncoderConfig(
            num_layers=self.num_layers,
            d_model=self.d_model,
            num_heads=self.num_heads,
            d_ff=self.mlp_ratio * self.d_model,
            positions="sinusoidal",
            pre_norm=True,
            dropout_rate=self.dropout,
            activation="gelu",
        )


def check_encoder(encoder: str, bidirectional: bool) -> None:
    """``ValueError`` for an unknown encoder name or a bidirectional Transformer."""
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}; known: {', '.join(ENCODERS)}")
    if encoder == "transformer" and bidirectional:
        raise ValueError("bidirectional does not apply to the transformer encoder (self-attention reads both ways)")


class ReadsTokens:
    """What the classifier's and the tagger's configs share: how they read a sentence's token vectors.

    A mixin of their frozen dataclasses, which declare ``encoder``, ``bidirectional``, ``num_layers``,
    ``hidden_size``, ``num_heads``, ``mlp_ratio`` and ``dropout``.
    """

    def check_reader(self) -> None:
        """``ValueError`` for an unknown encoder, a bidirectional Transformer or heads that do not divide."""
        check_encoder(self.encoder, self.bidirectional)
        if self.encoder == "transformer":
            self.attention()  # checks the heads

    @property
    def directions(self) -> int:
        """k: 2 for a bidirectional recurrent stack, else 1."""
        return 2 if self.bidirectional else 1

    def attention(self) -> TokenEncoderConfig:
        """The self-attention stack of ``encoder="transformer"``."""
        return TokenEncoderConfig(self.num_layers, self.hidden_size, self.num_heads, self.mlp_ratio, self.dropout)


def init_params(key: jax.Array, input_size: int, config: TokenEncoderConfig) -> dict:
    """The parameters (module docstring), float32: Glorot-uniform kernels, zero biases, unit norms."""
    k_in, k_encoder = jax.random.split(key)
    return {
        "in": attention.init_dense(k_in, input_size, config.d_model),
        "in_norm": attention.init_layer_norm(config.d_model),
        "encoder": attention.init_transformer_encoder(k_encoder, config.encoder()),
    }


def apply(
    config: TokenEncoderConfig, params: dict, x: jax.Array, lengths: jax.Array, key: jax.Array | None = None
) -> jax.Array:
    """Contextual vectors ``[b, t, d]`` of the features ``x [b, t, i]`` with true ``lengths [b]`` (1 to t).

    ``key`` draws the dropout masks; ``None`` applies none. Outputs at ``s >= lengths`` are zero.
    """
    z = attention.layer_norm(params["in_norm"], attention.dense(params["in"], x))
    return attention.transformer_encoder(params["encoder"], z, lengths, config=config.encoder(), key=key)
