"""An image captioner (one-to-many): a small convolutional encoder sets the initial state of a recurrent decoder.

For images ``X [b, H, W]`` (grey, [0, 1]) and captions ``w_1 .. w_n`` with ``w_n = <eos>`` (right-padded to t)::

    z_1      = pool(relu(conv_1(X))),  z_2 = pool(relu(conv_2(z_1)))           ``seqjax.models.image_encoder``
    v        = relu(flatten(z_2) F + f)                                        the image vector, [b, m]
    carry_0  = tanh(v A_j + a_j) for each [b, h_j] leaf j of cell.init_carry   A_j [m, h_j], a_j [h_j]
    x_s      = E[w_{s-1}],  w_0 = <bos>                                        E [V, e]: teacher forcing
    carry_s, h_s = cell(carry_{s-1}, x_s)                                      one seqjax.scan.unroll, lengths n
    logits_s = h_s W + c                                                       W [h, V], c [V]: predicts w_s

``conv_j`` are 3 x 3 convolutions ('SAME' padding) with ``conv_features[j]`` filters, ``pool`` 2 x 2 max-pooling
with stride 2. The image enters the decoder only through its initial carry. Every leaf of the carry with the
shape ``[b, h_j]`` (an LSTM's hidden and cell state; a GRU's or an Elman RNN's h; every layer's leaves of a
stacked cell) gets its own map from v; other leaves keep ``cell.init_carry``'s value. So any seqjax cell,
a user's included, works unchanged. The loss is the mean cross-entropy over the real caption tokens
(``<eos>`` included, padding excluded); since the unroller holds the carry at padded steps, an example's
logits do not depend on its padding or its batch mates.

Decoding is greedy (``decode``, by ``seqjax.decoding.greedy``): ``decode_step`` is the pure step
``(carry, tokens [b]) -> (carry, log_probs [b, V])``, fed back its own arg-max from ``<bos>`` until ``<eos>``.

Parameters: ``{"encoder": the image encoder's (``seqjax.models.image_encoder``), "init": ({"w": A_j, "b": a_j}
per [b, h] carry leaf), "cell": cell params, "embedding": E, "out_w": W, "out_b": c}``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import decoding, losses
from seqjax.attention.masks import length_mask
from seqjax.cells import Cell, cell_by_name, check_outputs_hidden_size, step_input
from seqjax.models import image_encoder
from seqjax.scan import unroll

Carry = Any


@dataclasses.dataclass(frozen=True)
class CaptionerConfig:
    """A captioner's shape.

    Attributes:
      vocab_size: V (``<pad>`` = ``pad_id``, ``<bos>`` = ``bos_id``, ``<eos>`` = ``eos_id``).
      image_height, image_width: H, W of the input images (the encoder is built for this shape).
      cell: a name for ``seqjax.cells.cell_by_name`` or a ``Cell``.
      hidden_size: h, the decoder's.
      embed_size: e, the word embedding.
      conv_features: filters of the convolutions, one per conv-relu-pool block.
      image_features: m, the size of the image vector v.
      embed_scale: E starts ``N(0, embed_scale^2)``.
      bos_id, eos_id: the ids of ``<bos>`` and ``<eos>``.
    """

    vocab_size: int
    image_height: int = 8
    image_width: int = 24
    cell: str | Cell = "lstm"
    hidden_size: int = 128
    embed_size: int = 32
    conv_features: tuple[int, ...] = (16, 32)
    image_features: int = 128
    embed_scale: float = 0.1
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self):
        sizes = (self.vocab_size, self.image_height, self.image_width, self.hidden_size, self.embed_size,
                 self.image_features, *self.conv_features)  # fmt: skip
        if min(sizes) < 1:
            raise ValueError(f"sizes must be >= 1: {self}")
        if not self.conv_features:
            raise ValueError("conv_features must name at least one convolution")
        if not self.embed_scale > 0:
            raise ValueError(f"embed_scale must be positive, got {self.embed_scale}")
        cell = self.cell if isinstance(self.cell, Cell) else cell_by_name(self.cell)
        check_outputs_hidden_size(cell, self.hidden_size, "the captioner's decoder")


@functools.cache
def captioner_cell(config: CaptionerConfig) -> Cell:
    return config.cell if isinstance(config.cell, Cell) else cell_by_name(config.cell)


def encoder_shapes(config: CaptionerConfig) -> dict:
    """The image encoder's parameter shapes (``image_encoder.param_shapes``) for this config's images."""
    return image_encoder.param_shapes(
        tuple(config.conv_features), config.image_features, config.image_height, config.image_width
    )


def _is_shape(x) -> bool:
    return isinstance(x, tuple)


def _is_state_leaf(leaf: jax.Array) -> bool:
    """A carry leaf ``[b, h]`` that the image initialises (module docstring)."""
    return jnp.ndim(leaf) == 2


def _normal_arrays(key: jax.Array, shapes: list[tuple[int, ...]]) -> list[jax.Array]:
    """Independent N(0, 1) float32 arrays of the given shapes, cut from one draw (XLA compiles one random-number
    kernel instead of one per array: on CPU each costs about a second of compilation)."""
    sizes = [math.prod(shape) for shape in shapes]
    flat = jax.random.normal(key, (sum(sizes),), jnp.float32)
    starts = itertools.accumulate(sizes, initial=0)
    return [
        flat[start : start + size].reshape(shape) for start, size, shape in zip(starts, sizes, shapes, strict=False)
    ]


def _lecun(z: jax.Array) -> jax.Array:
    """``z ~ N(0, 1)`` scaled to variance 1 / fan_in, fan_in = the product of all dimensions but the last."""
    return z / jnp.sqrt(jnp.float32(math.prod(z.shape[:-1])))


@functools.partial(jax.jit, static_argnums=0)
def init_params(config: CaptionerConfig, key: jax.Array) -> dict:
    """The parameters (module docstring), float32: the cell's own initialiser; the encoder's kernels, A_j and W
    LeCun-normal (N(0, 1 / fan_in), untruncated), E ``N(0, embed_scale^2)``, biases 0. Jitted."""
    cell = captioner_cell(config)
    k_cell, k_rest = jax.random.split(key)
    cell_params = cell.init_params(k_cell, config.embed_size, config.hidden_size)
    hidden = [leaf.shape[-1] for leaf in jax.tree.leaves(cell.init_carry(cell_params, (1,))) if _is_state_leaf(leaf)]
    # shapes as leaves, in jax.tree's order of the encoder's dict (sorted names): the order of the draws below
    encoder_leaves, encoder_def = jax.tree.flatten_with_path(encoder_shapes(config), is_leaf=_is_shape)
    kernels = [shape for path, shape in encoder_leaves if path[-1].key == "kernel"]
    shapes = [*kernels, *((config.image_features, h) for h in hidden), (config.vocab_size, config.embed_size),
              (config.hidden_size, config.vocab_size)]  # fmt: skip
    draws = iter(_normal_arrays(k_rest, shapes))
    encoder = jax.tree.unflatten(
        encoder_def,
        [_lecun(next(draws)) if path[-1].key == "kernel" else jnp.zeros(shape) for path, shape in encoder_leaves],
    )
    init = tuple({"w": _lecun(next(draws)), "b": jnp.zeros((h,), jnp.float32)} for h in hidden)
    embedding = config.embed_scale * next(draws)
    return {
        "encoder": encoder,
        "init": init,
        "cell": cell_params,
        "embedding": embedding,
        "out_w": _lecun(next(draws)),
        "out_b": jnp.zeros((config.vocab_size,), jnp.float32),
    }


def encode(config: CaptionerConfig, params: dict, images: jax.Array) -> jax.Array:
    """The image vector ``v [b, m]`` of ``images [b, H, W]``, in the encoder parameters' dtype."""
    dtype = jax.tree.leaves(params["encoder"])[0].dtype
    return image_encoder.apply(params["encoder"], images.astype(dtype))


def initial_carry(config: CaptionerConfig, params: dict, v: jax.Array) -> Carry:
    """The decoder's carry before ``<bos>``: ``tanh(v A_j + a_j)`` for each ``[b, h_j]`` leaf of the zero carry."""
    cell = captioner_cell(config)
    zeros = cell.init_carry(params["cell"], (v.shape[0],))
    leaves, treedef = jax.tree.flatten(zeros)
    maps = iter(params["init"])
    filled = []
    for leaf in leaves:
        if _is_state_leaf(leaf):
            linear = next(maps)
            z = v @ linear["w"]
            leaf = jnp.tanh(z + jnp.broadcast_to(linear["b"], z.shape)).astype(leaf.dtype)
        filled.append(leaf)
    return jax.tree.unflatten(treedef, filled)


def _readout(params: dict, y: jax.Array) -> jax.Array:
    logits = y @ params["out_w"]
    return logits + jnp.broadcast_to(params["out_b"], logits.shape)  # explicit: strict rank promotion


def decoder_inputs(config: CaptionerConfig, captions: jax.Array) -> jax.Array:
    """``[b, t]``: ``<bos>`` then the caption shifted right by one (teacher forcing)."""
    bos = jnp.full((captions.shape[0], 1), config.bos_id, captions.dtype)
    return jnp.concatenate([bos, captions[:, :-1]], axis=1)


def apply(config: CaptionerConfig, params: dict, images: jax.Array, captions: jax.Array, lengths: jax.Array):
    """Teacher-forced logits ``[b, t, V]`` float32: position s predicts ``captions[:, s]``.

    Args:
      config: the model.
      params: its parameters.
      images: ``[b, H, W]`` float32.
      captions: ``[b, t]`` int word ids ending in ``<eos>``; ignored at ``s >= lengths``.
      lengths: ``[b]`` int, 1 to t, counting ``<eos>``.
    """
    carry = initial_carry(config, params, encode(config, params, images))
    x = params["embedding"][decoder_inputs(config, captions)]  # [b, t, e]
    ys = unroll(captioner_cell(config), params["cell"], x, initial_carry=carry, lengths=jnp.asarray(lengths)).outputs
    return _readout(params, ys)


def loss(logits: jax.Array, captions: jax.Array, lengths: jax.Array) -> jax.Array:
    """Mean cross-entropy in nats over the real tokens of ``logits [b, t, V]`` against ``captions [b, t]``."""
    return losses.masked_cross_entropy(logits, captions, length_mask(lengths, captions.shape[1]))


def token_accuracy(logits: jax.Array, captions: jax.Array, lengths: jax.Array) -> jax.Array:
    """Teacher-forced: the fraction of real tokens that are the arg-max of ``logits``."""
    return losses.masked_accuracy(logits, captions, length_mask(lengths, captions.shape[1]))


def batch_loss(config: CaptionerConfig):
    """The ``make_training`` loss ``(params, (images, captions, lengths), key) -> (loss, {"token_accuracy"})``."""

    def loss_fn(params, batch, key):
        del key  # no dropout
        images, captions, lengths = batch
        logits = apply(config, params, images, captions, lengths)
        return loss(logits, captions, lengths), {"token_accuracy": token_accuracy(logits, captions, lengths)}

    return loss_fn


def decode_step(config: CaptionerConfig, params: dict) -> Callable[[Carry, jax.Array], tuple[Carry, jax.Array]]:
    """The pure decoding step ``(carry, tokens [b]) -> (carry, log_probs [b, V])``: embed, one cell step, readout."""
    cell = captioner_cell(config)

    def step(carry: Carry, tokens: jax.Array) -> tuple[Carry, jax.Array]:
        carry, y = step_input(cell, params["cell"], carry, params["embedding"][tokens])
        return carry, jax.nn.log_softmax(_readout(params, y), axis=-1)

    return step


@functools.partial(jax.jit, static_argnums=(0, 3))
def decode(config: CaptionerConfig, params: dict, images: jax.Array, max_len: int) -> decoding.Decoded:
    """Greedy captions of ``images [b, H, W]`` (``seqjax.decoding.greedy``): ``tokens [b, max_len]`` (0 after
    ``<eos>``), ``lengths [b]`` counting ``<eos>`` (``max_len`` if none came), ``score [b]`` the summed
    log-probabilities. Jitted per config and shape."""
    carry = initial_carry(config, params, encode(config, params, images))
    return decoding.greedy(decode_step(config, params), carry, bos=config.bos_id, eos=config.eos_id, max_len=max_len)


@functools.partial(jax.jit, static_argnums=0)
def predict(config: CaptionerConfig, params: dict, images: jax.Array, captions: jax.Array, lengths: jax.Array):
    """``apply``, jitted: teacher-forced logits for evaluation."""
    return apply(config, params, images, captions, lengths)


def caption_metrics(tokens, lengths, captions, caption_lengths) -> dict[str, float]:
    """Exact-caption and per-word accuracy of decoded captions against the true ones (NumPy).

    Args:
      tokens: ``[n, l]`` decoded word ids; only the first ``lengths`` count.
      lengths: ``[n]`` decoded lengths, counting ``<eos>`` (``l`` when none was decoded).
      captions: ``[n, t]`` true word ids, the digits' names then ``<eos>``.
      caption_lengths: ``[n]`` true lengths, counting ``<eos>``.

    Returns:
      ``{"exact": mean_i [lengths_i = caption_lengths_i and tokens_i = captions_i up to it],
      "word_accuracy": sum_i #{j < caption_lengths_i - 1: j < lengths_i and tokens_ij = captions_ij}
      / sum_i (caption_lengths_i - 1)}``.
    """
    tokens, lengths = np.asarray(tokens), np.asarray(lengths)
    captions, caption_lengths = np.asarray(captions), np.asarray(caption_lengths)
    steps = captions.shape[1]
    aligned = np.full(captions.shape, -1, np.int64)  # decoded tokens on the true captions' positions
    width = min(steps, tokens.shape[1])
    aligned[:, :width] = tokens[:, :width]
    positions = np.arange(steps)[None, :]
    same = (aligned == captions) & (positions < lengths[:, None])
    real = positions < caption_lengths[:, None]
    exact = (lengths == caption_lengths) & np.all(same | ~real, axis=1)
    words = positions < caption_lengths[:, None] - 1
    return {
        "exact": float(np.mean(exact)),
        "word_accuracy": float(np.sum(same & words) / max(int(np.sum(words)), 1)),
    }
