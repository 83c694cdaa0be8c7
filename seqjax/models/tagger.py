"""A recurrent sequence tagger (many-to-many): word and character features, a BiLSTM, a tag per token.

For a right-padded batch ``words [b, t]``, ``chars [b, t, w]`` (and, optionally, given tags ``pos [b, t]``)
with true lengths ``n [b]`` and ``L`` layers of any seqjax cell::

    x_s      = [ E[word_s] ; charcnn(chars_s) ; P[pos_s] ]    E [V, e]; charcnn: [f]; P [Q, p] (if Q > 0)
    charcnn  = max_{j < len} relu(K [c_{j-1}; c_j; c_{j+1}] + k)  c_j = C[char_j] (0 outside the word), K [3c, f]
    h^1_s    = cell(h^1_{s-1}, drop(x_s))                    seqjax.layers.unroll_layers, with lengths
    h^l_s    = cell(h^l_{s-1}, drop(h^{l-1}_s))              bidirectional: h^l_s = [fwd h^l_s ; bwd h^l_s]
    logits_s = drop(h^L_s) W + c                             W [k h, T], c [T], k = 2 if bidirectional else 1

(h: the cell's output size, ``hidden_size`` or an LSTMP's ``proj_size``).

The character feature (a CNN of window ``char_window`` with max-pooling over the word's characters, as in
Ma and Hovy 2016) reads the original form: case, digits, suffixes; it is what tags unknown words. The
optional ``P[pos_s]`` embeds a tag given with the input (a chunker reads the POS tags of the CoNLL-2000
files, as the BiLSTM chunkers of the literature do); without it (``pos_vocab_size = 0``) the model and its
initialisation are exactly those of the plain tagger. Since the unroller holds the carry at padded steps
and zeroes their outputs, and a word's character feature reads only its own characters, a sentence's
logits do not depend on its padding or its batch mates.
Logits at padded positions are those of a zero vector (``c``), never counted by ``loss`` or ``accuracy``.
``drop`` is dropout of rate ``dropout`` (a fresh mask per element; none on the recurrent path).

With ``encoder="transformer"`` the recurrent layers are replaced by ``L`` self-attention blocks of width
``h`` (``seqjax.models.token_encoder``): ``h^L = token_encoder(drop(x))``, k = 1.

Parameters: ``{"embedding": [V, e], "char_embedding": [C, c], "char_w": [window c, f], "char_b": [f],
"layers": [per layer: cell params, or (forward, backward) params], "out_w": [k h, T], "out_b": [T]}``, and
``"pos_embedding": [Q, p]`` if ``pos_vocab_size = Q > 0``; ``"encoder": token_encoder params`` in place of
``"layers"`` for the Transformer.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from seqjax import initializers, losses
from seqjax.attention.masks import length_mask
from seqjax.cells import Cell, cell_by_name, output_size_of
from seqjax.layers import dropout, init_layers, unroll_layers
from seqjax.models import token_encoder


@dataclasses.dataclass(frozen=True)
class TaggerConfig(token_encoder.ReadsTokens):
    """A tagger's shape and regularisation.

    Attributes:
      vocab_size: V, words (``<pad>`` = 0, ``<unk>`` = 1).
      char_vocab_size: C, characters (``<pad>`` = 0: outside a word).
      num_tags: T.
      cell: a name for ``seqjax.cells.cell_by_name`` or a ``Cell``.
      num_layers: L.
      hidden_size: h, per layer and direction.
      embed_size: e, the word embedding.
      char_embed_size: c.
      char_features: f, the CNN's filters (0: no character feature).
      char_window: odd CNN window in characters.
      bidirectional: read each layer's input both ways.
      dropout: rate on the word vectors, between layers and before the output layer.
      embed_scale: word, character and POS embeddings start ``N(0, embed_scale^2)``.
      pos_vocab_size: Q, given input tags (``<pad>`` = 0); 0: no such input.
      pos_embed_size: p, their embedding (used only if Q > 0).
      encoder: ``rnn`` (the cell, ``num_layers`` deep) or ``transformer`` (``num_layers`` self-attention
        blocks of width ``hidden_size``; ``cell`` is then unused and ``bidirectional`` must be False).
      num_heads: the Transformer's heads (``hidden_size`` must be divisible by it).
      mlp_ratio: the Transformer's feed-forward size is ``mlp_ratio * hidden_size``.
    """

    vocab_size: int
    char_vocab_size: int
    num_tags: int
    cell: str | Cell = "lstm"
    num_layers: int = 2
    hidden_size: int = 128
    embed_size: int = 100
    char_embed_size: int = 30
    char_features: int = 50
    char_window: int = 3
    bidirectional: bool = True
    dropout: float = 0.33
    embed_scale: float = 0.1
    pos_vocab_size: int = 0
    pos_embed_size: int = 25
    encoder: str = "rnn"
    num_heads: int = 4
    mlp_ratio: int = 4

    def __post_init__(self):
        sizes = (self.vocab_size, self.char_vocab_size, self.num_tags, self.num_layers, self.hidden_size,
                 self.embed_size, self.char_embed_size, self.pos_embed_size)  # fmt: skip
        if min(sizes) < 1 or self.char_features < 0 or self.pos_vocab_size < 0:
            raise ValueError(f"sizes must be >= 1 (char_features, pos_vocab_size >= 0): {self}")
        if self.char_window < 1 or self.char_window % 2 == 0:
            raise ValueError(f"char_window must be odd and positive, got {self.char_window}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.embed_scale > 0:
            raise ValueError(f"embed_scale must be positive, got {self.embed_scale}")
        self.check_reader()

    @property
    def input_size(self) -> int:
        """The first layer's input: ``e + f`` (+ ``p`` with given tags)."""
        return self.embed_size + self.char_features + (self.pos_embed_size if self.pos_vocab_size else 0)


@functools.cache
def tagger_cell(config: TaggerConfig) -> Cell:
    return config.cell if isinstance(config.cell, Cell) else cell_by_name(config.cell)


def init_params(config: TaggerConfig, key: jax.Array) -> dict:
    """The parameters (module docstring), float32; cells by their own initialisers, W, K LeCun-normal, biases 0.

    ``P`` comes from ``fold_in(key, 1)``, so the other parameters do not depend on whether it exists.
    """
    k_embed, k_chars, k_conv, k_out, *k_layers = jax.random.split(key, 4 + config.num_layers)
    if config.encoder == "transformer":
        encoder = {"encoder": token_encoder.init_params(k_layers[0], config.input_size, config.attention())}
        features = config.hidden_size
    else:
        cell = tagger_cell(config)
        encoder = {"layers": init_layers(cell, k_layers, config.input_size, config.hidden_size, config.bidirectional)}
        features = config.directions * output_size_of(cell, config.hidden_size)  # y_t: h, or an LSTMP's p
    scale = config.embed_scale
    given_tags = {}
    if config.pos_vocab_size:
        k_pos = jax.random.fold_in(key, 1)
        given_tags["pos_embedding"] = scale * jax.random.normal(
            k_pos, (config.pos_vocab_size, config.pos_embed_size), jnp.float32
        )
    char_cnn = {}
    if config.char_features:
        char_cnn = {
            "char_embedding": scale
            * jax.random.normal(k_chars, (config.char_vocab_size, config.char_embed_size), jnp.float32),
            "char_w": initializers.lecun_normal(
                k_conv, (config.char_window * config.char_embed_size, config.char_features)
            ),
            "char_b": jnp.zeros((config.char_features,), jnp.float32),
        }
    return {
        "embedding": scale * jax.random.normal(k_embed, (config.vocab_size, config.embed_size), jnp.float32),
        **char_cnn,
        **encoder,
        "out_w": initializers.lecun_normal(k_out, (features, config.num_tags)),
        "out_b": jnp.zeros((config.num_tags,), jnp.float32),
        **given_tags,
    }


def char_features(config: TaggerConfig, params: dict, chars: jax.Array) -> jax.Array:
    """``[b, t, f]``: the max-pooled character CNN of each word ``chars [b, t, w]`` (0 for an empty word)."""
    valid = chars != 0  # [b, t, w]
    c = jnp.where(valid[..., None], params["char_embedding"][chars], 0.0)  # [b, t, w, c]: zeros outside the word
    half = config.char_window // 2
    padded = jnp.pad(c, ((0, 0), (0, 0), (half, half), (0, 0)))
    width = chars.shape[-1]
    windows = jnp.concatenate([padded[:, :, j : j + width] for j in range(config.char_window)], axis=-1)
    h = jax.nn.relu(
        windows @ params["char_w"] + jnp.broadcast_to(params["char_b"], (*chars.shape, config.char_features))
    )
    return jnp.max(jnp.where(valid[..., None], h, 0.0), axis=2)  # relu >= 0: the 0 fill never wins a real max


def apply(
    config: TaggerConfig,
    params: dict,
    words: jax.Array,
    chars: jax.Array,
    lengths: jax.Array,
    key: jax.Array | None = None,
    pos: jax.Array | None = None,
) -> jax.Array:
    """Tag logits ``[b, t, T]`` float32 for the right-padded sentences.

    Args:
      config: the model.
      params: its parameters.
      words: ``[b, t]`` int word ids; ignored at ``s >= lengths``.
      chars: ``[b, t, w]`` int character ids of each word's original form, ``<pad>`` (0) after its end.
      lengths: ``[b]`` int, 1 to t.
      key: dropout key (training); ``None`` (evaluation) applies no dropout.
      pos: ``[b, t]`` int ids of the given tags, required iff ``config.pos_vocab_size > 0``.
    """
    if (pos is None) != (config.pos_vocab_size == 0):
        need = "required" if pos is None else "unused"
        raise ValueError(f"pos_vocab_size={config.pos_vocab_size}: the given tags (pos) are {need}")
    lengths = jnp.asarray(lengths)
    keys = [None] * (config.num_layers + 1) if key is None else list(jax.random.split(key, config.num_layers + 1))
    x = params["embedding"][words]  # [b, t, e]
    if config.char_features:
        x = jnp.concatenate([x, char_features(config, params, chars)], axis=-1)  # [b, t, e + f]
    if pos is not None:
        x = jnp.concatenate([x, params["pos_embedding"][pos]], axis=-1)  # [b, t, e + f + p]
    if config.encoder == "transformer":
        k_in, k_encoder = (None, None) if key is None else jax.random.split(keys[0])
        x = token_encoder.apply(
            config.attention(), params["encoder"], dropout(x, config.dropout, k_in), lengths, k_encoder
        )
    else:
        x = unroll_layers(
            tagger_cell(config),
            params["layers"],
            x,
            both_ways=config.bidirectional,
            lengths=lengths,
            dropout_rates=config.dropout,
            dropout_keys=keys[:-1],
        ).outputs  # [b, t, k h]
    logits = dropout(x, config.dropout, keys[-1]) @ params["out_w"]
    return logits + jnp.broadcast_to(params["out_b"], logits.shape)  # explicit: strict rank promotion


def loss(logits: jax.Array, tags: jax.Array, lengths: jax.Array) -> jax.Array:
    """Mean cross-entropy in nats over the valid tokens of ``logits [b, t, T]`` against ``tags [b, t]``."""
    return losses.masked_cross_entropy(logits, tags, length_mask(lengths, tags.shape[1]))


def accuracy(logits: jax.Array, tags: jax.Array, lengths: jax.Array) -> jax.Array:
    """The fraction of valid tokens whose tag is the arg-max of ``logits``: a float32 scalar."""
    return losses.masked_accuracy(logits, tags, length_mask(lengths, tags.shape[1]))


def batch_loss(config: TaggerConfig):
    """The ``make_training`` loss ``(params, (words, chars, lengths, tags[, pos]), key) -> (loss, {"accuracy"})``.

    The batch holds ``pos`` iff ``config.pos_vocab_size > 0``.
    """

    def loss_fn(params, batch, key):
        words, chars, lengths, tags, *pos = batch
        logits = apply(config, params, words, chars, lengths, key, *pos)
        return loss(logits, tags, lengths), {"accuracy": accuracy(logits, tags, lengths)}

    return loss_fn


@functools.partial(jax.jit, static_argnums=0)
def predict(
    config: TaggerConfig,
    params: dict,
    words: jax.Array,
    chars: jax.Array,
    lengths: jax.Array,
    pos: jax.Array | None = None,
) -> jax.Array:
    """``apply`` without dropout, jitted (one compilation per ``config`` and padded shape)."""
    return apply(config, params, words, chars, lengths, pos=pos)
