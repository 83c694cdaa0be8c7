"""A sentence classifier (many-to-one): embedding, recurrent (or self-attention) encoder, pooling, linear layer.

For a right-padded batch ``tokens [b, t]`` with true lengths ``n [b]`` and ``L`` layers of any seqjax cell::

    x_s      = E[w_s]                                    E [V, e]  (s < n; the padding is never read)
    h^1_s    = cell(h^1_{s-1}, drop_e(x_s))              seqjax.layers.unroll_layers, with lengths
    h^l_s    = cell(h^l_{s-1}, drop(h^{l-1}_s))          bidirectional: h^l_s = [fwd h^l_s ; bwd h^l_s], [2h]
    v        = pool(h^L)                                 [k h], k = 2 if bidirectional else 1
    logits   = drop(v) W + c                             W [k h, C], c [C]

Pooling:

- ``last``: the top layer's output at each sentence's true end, ``h^L_{n-1}`` (for every built-in cell but the
  LRU the final hidden state; the LRU's is its real readout of its complex state); for a bidirectional
  encoder, the forward output after ``w_{n-1}`` and the backward output after ``w_0``, concatenated.
- ``mean``: ``sum_{s < n} h^L_s / n`` (``unroll`` zeroes the outputs at padded steps).
- ``max``: the element-wise maximum over the valid positions ``s < n`` only.

Because the unroller holds the carry at padded steps and zeroes their outputs, a sentence's logits do
not depend on how much padding follows it or on the other sentences of its batch. ``drop`` is dropout
on non-recurrent connections (rate ``dropout``: between layers and on ``v``; ``drop_e`` on the
embeddings at rate ``embed_dropout``); a fresh mask per element and step, none on the recurrent path.

With ``encoder="transformer"`` the recurrent layers are replaced by ``L`` self-attention blocks of width
``h`` (``seqjax.models.token_encoder``): ``h^L = token_encoder(drop_e(x))``, k = 1, and ``last`` pools the
output at each sentence's last word, ``h^L_{n-1}``, as for the recurrent encoder (every position sees the whole
sentence).

Parameters: ``{"embedding": [V, e], "layers": [per layer: cell params, or (forward, backward) params],
"out_w": [k h, C], "out_b": [C]}``, with ``"encoder": token_encoder params`` in place of ``"layers"`` for the
Transformer. Built-in and user cells alike; every layer has ``hidden_size`` units, and ``h`` above is the size of
a cell's output y_t (``seqjax.cells.output_size_of``: ``hidden_size``, or ``p`` for the LSTM with ``proj_size=p``).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from seqjax import initializers
from seqjax.attention.masks import length_mask
from seqjax.cells import Cell, cell_by_name, output_size_of
from seqjax.layers import dropout, init_layers, unroll_layers
from seqjax.models import token_encoder

POOLINGS = ("last", "mean", "max")


@dataclasses.dataclass(frozen=True)
class ClassifierConfig(token_encoder.ReadsTokens):
    """A classifier's shape and regularisation.

    Attributes:
      vocab_size: V.
      cell: a name for ``seqjax.cells.cell_by_name`` (``"lstm"``, ``"gru"``, ``"module:attr"``) or a ``Cell``.
      num_layers: L stacked recurrent layers.
      hidden_size: h, per layer and direction.
      embed_size: e.
      bidirectional: read each layer's input in both directions (layer l > 1 reads both, ``[2h]``).
      pooling: ``last``, ``mean`` or ``max`` (module docstring).
      dropout: dropout rate between layers and on the sentence vector.
      embed_dropout: dropout rate on the embeddings.
      num_classes: C.
      embed_scale: the embedding starts ``N(0, embed_scale^2)`` (PyTorch's ``nn.Embedding`` uses 1).
      encoder: ``rnn`` (the cell, ``num_layers`` deep) or ``transformer`` (``num_layers`` self-attention
        blocks of width ``hidden_size``; ``cell`` is then unused and ``bidirectional`` must be False).
      num_heads: the Transformer's heads (``hidden_size`` must be divisible by it).
      mlp_ratio: the Transformer's feed-forward size is ``mlp_ratio * hidden_size``.
    """

    vocab_size: int
    cell: str | Cell = "lstm"
    num_layers: int = 1
    hidden_size: int = 150
    embed_size: int = 300
    bidirectional: bool = False
    pooling: str = "last"
    dropout: float = 0.5
    embed_dropout: float = 0.0
    num_classes: int = 2
    embed_scale: float = 1.0
    encoder: str = "rnn"
    num_heads: int = 4
    mlp_ratio: int = 4

    def __post_init__(self):
        sizes = (self.vocab_size, self.num_layers, self.hidden_size, self.embed_size, self.num_classes)
        if min(sizes) < 1:
            raise ValueError(f"vocab_size, num_layers, hidden_size, embed_size and num_classes must be >= 1: {self}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; known: {', '.join(POOLINGS)}")
        if not (0 <= self.dropout < 1 and 0 <= self.embed_dropout < 1):
            raise ValueError(f"dropout rates must be in [0, 1), got {self.dropout} and {self.embed_dropout}")
        if not self.embed_scale > 0:
            raise ValueError(f"embed_scale must be positive, got {self.embed_scale}")
        self.check_reader()


@functools.cache
def classifier_cell(config: ClassifierConfig) -> Cell:
    """The cell of every layer and direction."""
    return config.cell if isinstance(config.cell, Cell) else cell_by_name(config.cell)


def init_params(config: ClassifierConfig, key: jax.Array) -> dict:
    """The parameters (module docstring), float32; cells by their own initialisers, W LeCun-normal, c = 0."""
    k_embed, k_out, *k_layers = jax.random.split(key, 2 + config.num_layers)
    if config.encoder == "transformer":
        encoder = {"encoder": token_encoder.init_params(k_layers[0], config.embed_size, config.attention())}
        features = config.hidden_size
    else:
        cell = classifier_cell(config)
        encoder = {"layers": init_layers(cell, k_layers, config.embed_size, config.hidden_size, config.bidirectional)}
        features = config.directions * output_size_of(cell, config.hidden_size)
    return {
        "embedding": config.embed_scale
        * jax.random.normal(k_embed, (config.vocab_size, config.embed_size), jnp.float32),
        **encoder,
        "out_w": initializers.lecun_normal(k_out, (features, config.num_classes)),
        "out_b": jnp.zeros((config.num_classes,), jnp.float32),
    }


def hidden_state(carry) -> jax.Array:
    """The hidden state ``[b, h]`` in a cell's carry: the carry itself if it is one array, else its ``hidden``."""
    if isinstance(carry, jax.Array):
        return carry
    hidden = getattr(carry, "hidden", None)
    if not isinstance(hidden, jax.Array):
        raise ValueError(
            f"pooling='last' reads the hidden state of the final carry: one array, or a carry with a 'hidden' "
            f"field; this cell's carry is a {type(carry).__name__} (use pooling 'mean' or 'max')"
        )
    return hidden


def _pool(pooling: str, outputs: jax.Array, bidirectional: bool, lengths: jax.Array) -> jax.Array:
    """The sentence vectors ``[b, k h]`` from the top layer's ``outputs [b, t, k h]``."""
    if pooling == "last":
        last = jnp.take_along_axis(outputs, (lengths - 1)[:, None, None], axis=1)[:, 0]  # [b, k h]
        if bidirectional:  # the backward half's last output is the one after reading position 0
            half = outputs.shape[-1] // 2
            return jnp.concatenate([last[:, :half], outputs[:, 0, half:]], axis=-1)
        return last
    if pooling == "mean":
        return jnp.sum(outputs, axis=1) / lengths.astype(outputs.dtype)[:, None]
    lowest = jnp.finfo(outputs.dtype).min
    return jnp.max(jnp.where(length_mask(lengths, outputs.shape[1])[:, :, None], outputs, lowest), axis=1)


def sentence_vectors(
    config: ClassifierConfig, params: dict, tokens: jax.Array, lengths: jax.Array, key: jax.Array | None = None
) -> jax.Array:
    """``v [b, k h]`` (before the last dropout) for ``tokens [b, t]`` int, ``lengths [b]`` int (each in 1..t).

    ``key`` draws the dropout masks of the embeddings and between layers; ``None`` applies none.
    """
    lengths = jnp.asarray(lengths)
    if config.encoder == "transformer":
        return _attention_sentence_vectors(config, params, tokens, lengths, key)
    stack = unroll_layers(
        classifier_cell(config),
        params["layers"],
        params["embedding"][tokens],  # [b, t, e]
        both_ways=config.bidirectional,
        lengths=lengths,
        dropout_rates=[config.embed_dropout] + [config.dropout] * (config.num_layers - 1),
        dropout_keys=None if key is None else list(jax.random.split(key, config.num_layers)),
    )  # outputs [b, t, k h]
    return _pool(config.pooling, stack.outputs, config.bidirectional, lengths)


def _attention_sentence_vectors(
    config: ClassifierConfig, params: dict, tokens: jax.Array, lengths: jax.Array, key: jax.Array | None
) -> jax.Array:
    k_embed, k_encoder = (None, None) if key is None else jax.random.split(key)
    x = dropout(params["embedding"][tokens], config.embed_dropout, k_embed)  # [b, t, e]
    outputs = token_encoder.apply(config.attention(), params["encoder"], x, lengths, k_encoder)  # [b, t, h]
    return _pool(config.pooling, outputs, False, lengths)


def apply(
    config: ClassifierConfig, params: dict, tokens: jax.Array, lengths: jax.Array, key: jax.Array | None = None
) -> jax.Array:
    """Class logits ``[b, C]`` float32 for the right-padded ``tokens [b, t]`` with true ``lengths [b]``.

    Args:
      config: the model.
      params: its parameters.
      tokens: ``[b, t]`` int ids; entries at ``s >= lengths`` are ignored.
      lengths: ``[b]`` int, each sentence's length, 1 to t.
      key: dropout key (training); ``None`` (evaluation) applies no dropout.
    """
    keys = (None, None) if key is None else jax.random.split(key)
    v = dropout(sentence_vectors(config, params, tokens, lengths, keys[0]), config.dropout, keys[1])
    logits = v @ params["out_w"]
    return logits + jnp.broadcast_to(params["out_b"], logits.shape)  # explicit: strict rank promotion


def loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy in nats of ``logits [b, C]`` against ``labels [b]`` int."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The fraction of ``labels [b]`` that are the arg-max of ``logits [b, C]``: a float32 scalar."""
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


def batch_loss(config: ClassifierConfig):
    """The ``make_training`` loss ``(params, (tokens [b, t], lengths [b], labels [b]), key) -> (loss, aux)``.

    Dropout draws from the step's key; ``aux`` holds the batch's accuracy (with dropout on).
    """

    def loss_fn(params, batch, key):
        tokens, lengths, labels = batch
        logits = apply(config, params, tokens, lengths, key)
        return loss(logits, labels), {"accuracy": accuracy(logits, labels)}

    return loss_fn


@functools.partial(jax.jit, static_argnums=0)
def predict(config: ClassifierConfig, params: dict, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
    """``apply`` without dropout, jitted (one compilation per ``config`` and padded shape)."""
    return apply(config, params, tokens, lengths)
