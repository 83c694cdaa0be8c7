"""An encoder-decoder translation model (many-to-many, unaligned) with optional attention.

Dimension legend: b batch, s source position, t target position, e embedding, h hidden (every layer and
direction), k = 2 if bidirectional else 1, a attention size, V target vocabulary, L layers.

Encoder, for a right-padded source ``x [b, s]`` with true lengths ``n [b]``::

    u_s     = drop(E_x[x_s])                                  E_x [V_x, e]
    h^l_s   = cell(h^l_{s-1}, drop(h^{l-1}_s))                seqjax.layers.unroll_layers, with lengths n
    m_s     = h^L_s                                           the memory [b, s, k h]; bidirectional: [fwd; bwd]

Decoder start: layer l starts from the encoder's layer-l final carry (each example's own last real step);
with a bidirectional encoder each carry leaf (``h``, and ``c`` of an LSTM) is bridged,
``z^l_0 = tanh([fwd z^l ; bwd z^l] B^l + b^l)`` (``B^l [2 z, z]``); otherwise it is copied.

Decoder step t (teacher forcing: ``y_{t-1}`` is the reference, ``y_0 = <bos>``), ``s_{t-1}`` the top layer's
hidden state before the step, ``g_t = drop(E_y[y_{t-1}])``::

    attention="none" (Sutskever et al. 2014; the source enters only through the initial state):
        s_t = cell(s_{t-1}, g_t);                         o_t = s_t                                     [h]
    attention="bahdanau" (Bahdanau et al. 2015, additive):
        e_{ts} = v^T tanh(W_s s_{t-1} + W_h m_s)          W_s [h, a], W_h [k h, a], v [a]
        alpha_t = softmax_s(e_t),  c_t = sum_s alpha_{ts} m_s
        s_t = cell(s_{t-1}, [g_t ; c_t]);                 o_t = [s_t ; c_t]                             [h + k h]
    attention="luong" (Luong et al. 2015, "general" score, input feeding):
        s_t = cell(s_{t-1}, [g_t ; ~h_{t-1}])             ~h_0 = 0
        e_{ts} = s_t^T W_a m_s                            W_a [h, k h] (stored transposed, [k h, h])
        alpha_t = softmax_s(e_t),  c_t = sum_s alpha_{ts} m_s
        ~h_t = tanh(W_c [c_t ; s_t]);                     o_t = ~h_t                                    [h]
    logits_t = drop(o_t) W_o + b_o                       W_o [|o|, V]

With L > 1 layers ``cell`` is the stack: layer l reads layer l-1's output at the same step. The softmax over s
is masked: positions ``s >= n`` get the score ``finfo.min``, so their weight is exactly 0 (``exp`` underflows)
and every row sums to 1 over the real positions. The teacher-forced decoder is itself a ``Cell`` run by
``seqjax.scan.unroll`` (the memory travels with its parameters); padded target steps hold the carry. So a
pair's loss and translation do not depend on its padding or its batch mates. ``drop`` is dropout of rate
``dropout`` on the embeddings, between encoder layers and on ``o_t``; none on the recurrent paths, and none
between decoder layers (a per-step mask would have to enter the scan).

Parameters: ``{"src_embedding": [V_x, e], "tgt_embedding": [V, e], "encoder": [per layer: cell params, or
(forward, backward)], "bridge": [per layer: per carry leaf {"w", "b"}] (bidirectional only), "decoder": [per
layer: cell params], "attention": {"w_s", "w_h", "v"} | {"w_a", "w_c"} | {}, "out_w": [|o|, V], "out_b": [V]}``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from seqjax import initializers, losses, precision
from seqjax.attention.masks import length_mask
from seqjax.cells import Cell, cell_by_name, check_outputs_hidden_size
from seqjax.cells.base import step_input
from seqjax.layers import dropout, init_layers, unroll_layers
from seqjax.models.classifier import hidden_state
from seqjax.scan import unroll

ATTENTIONS = ("none", "bahdanau", "luong")


@dataclasses.dataclass(frozen=True)
class Seq2SeqConfig:
    """A translation model's shape and regularisation.

    Attributes:
      src_vocab_size: V_x.
      tgt_vocab_size: V (``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3, see seqjax.data.translation).
      cell: a name for ``seqjax.cells.cell_by_name`` or a ``Cell`` (encoder and decoder).
      num_layers: L, in the encoder and in the decoder.
      hidden_size: h.
      embed_size: e, both sides.
      bidirectional: a bidirectional encoder (the decoder's initial state is then bridged).
      attention: ``none``, ``bahdanau`` or ``luong`` (module docstring).
      attention_size: a, Bahdanau's; 0 means h.
      dropout: rate on the embeddings, between encoder layers and before the output layer.
      embed_scale: embeddings start ``N(0, embed_scale^2)``.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    cell: str | Cell = "lstm"
    num_layers: int = 1
    hidden_size: int = 256
    embed_size: int = 128
    bidirectional: bool = False
    attention: str = "luong"
    attention_size: int = 0
    dropout: float = 0.2
    embed_scale: float = 0.1

    def __post_init__(self):
        sizes = (self.src_vocab_size, self.tgt_vocab_size, self.num_layers, self.hidden_size, self.embed_size)
        if min(sizes) < 1 or self.attention_size < 0:
            raise ValueError(f"sizes must be >= 1 (attention_size >= 0): {self}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {self.attention!r}; known: {', '.join(ATTENTIONS)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.embed_scale > 0:
            raise ValueError(f"embed_scale must be positive, got {self.embed_scale}")
        cell = self.cell if isinstance(self.cell, Cell) else cell_by_name(self.cell)
        check_outputs_hidden_size(cell, self.hidden_size, "seq2seq's attention")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def memory_size(self) -> int:
        """k h, the size of an encoder output m_s."""
        return self.directions * self.hidden_size

    @property
    def output_size(self) -> int:
        """|o_t|, what the output layer reads."""
        return self.hidden_size + (self.memory_size if self.attention == "bahdanau" else 0)


@functools.cache
def model_cell(config: Seq2SeqConfig) -> Cell:
    """The cell of every encoder and decoder layer."""
    return config.cell if isinstance(config.cell, Cell) else cell_by_name(config.cell)


class Memory(NamedTuple):
    """The encoded source: ``values`` m ``[b, s, k h]``, ``keys`` ``[b, s, a]`` (Bahdanau's W_h m), ``[b, s, h]``
    (Luong's m W_a^T) or m itself (no attention), and ``mask [b, s]`` bool, True at real positions."""

    values: jax.Array
    keys: jax.Array
    mask: jax.Array


class DecoderState(NamedTuple):
    """``layers``: one carry per decoder layer; ``feed``: Luong's ~h_{t-1} ``[b, h]`` (``[b, 0]`` otherwise)."""

    layers: tuple
    feed: jax.Array


class DecodeCarry(NamedTuple):
    """What ``seqjax.decoding`` carries from step to step: every leaf has the batch axis first."""

    state: DecoderState
    memory: Memory


def _carry_leaf_sizes(cell: Cell, params) -> list[int]:
    shapes = jax.eval_shape(lambda p: cell.init_carry(p, (1,)), params)
    return [leaf.shape[-1] for leaf in jax.tree.leaves(shapes)]


def init_params(config: Seq2SeqConfig, key: jax.Array) -> dict:
    """The parameters (module docstring), float32; cells by their own initialisers, matrices LeCun-normal,
    biases 0, embeddings ``N(0, embed_scale^2)``."""
    cell = model_cell(config)
    h, e, L = config.hidden_size, config.embed_size, config.num_layers
    k_src, k_tgt, k_att, k_out, k_bridge, *k_layers = jax.random.split(key, 5 + 2 * L)
    encoder = init_layers(cell, k_layers[:L], e, h, config.bidirectional)
    extra = {"none": 0, "bahdanau": config.memory_size, "luong": h}[config.attention]
    decoder = [cell.init_params(k, e + extra if layer == 0 else h, h) for layer, k in enumerate(k_layers[L:])]
    params = {
        "src_embedding": config.embed_scale * jax.random.normal(k_src, (config.src_vocab_size, e), jnp.float32),
        "tgt_embedding": config.embed_scale * jax.random.normal(k_tgt, (config.tgt_vocab_size, e), jnp.float32),
        "encoder": encoder,
        "decoder": decoder,
        "attention": _init_attention(config, k_att),
        "out_w": initializers.lecun_normal(k_out, (config.output_size, config.tgt_vocab_size)),
        "out_b": jnp.zeros((config.tgt_vocab_size,), jnp.float32),
    }
    if config.bidirectional:
        sizes = _carry_leaf_sizes(cell, decoder[0])
        keys = jax.random.split(k_bridge, L * len(sizes)).reshape(L, len(sizes))
        params["bridge"] = [
            [{"w": initializers.lecun_normal(kk, (2 * z, z)), "b": jnp.zeros((z,), jnp.float32)}
             for kk, z in zip(keys[layer], sizes, strict=True)]
            for layer in range(L)
        ]  # fmt: skip
    return params


def _init_attention(config: Seq2SeqConfig, key: jax.Array) -> dict:
    h, m = config.hidden_size, config.memory_size
    k1, k2, k3 = jax.random.split(key, 3)
    if config.attention == "bahdanau":
        a = config.attention_size or h
        return {
            "w_s": initializers.lecun_normal(k1, (h, a)),
            "w_h": initializers.lecun_normal(k2, (m, a)),
            "v": initializers.lecun_normal(k3, (a, 1))[:, 0],
        }
    if config.attention == "luong":
        return {"w_a": initializers.lecun_normal(k1, (m, h)), "w_c": initializers.lecun_normal(k2, (m + h, h))}
    return {}


def encode(
    config: Seq2SeqConfig, params: dict, src: jax.Array, src_lengths: jax.Array, key: jax.Array | None = None
) -> tuple[Memory, DecoderState]:
    """The memory of ``src [b, s]`` (lengths ``[b]``, each 1..s) and the decoder's initial state."""
    src_lengths = jnp.asarray(src_lengths)
    stack = unroll_layers(
        model_cell(config),
        params["encoder"],
        params["src_embedding"][src],  # [b, s, e]
        both_ways=config.bidirectional,
        lengths=src_lengths,
        dropout_rates=config.dropout,
        dropout_keys=None if key is None else list(jax.random.split(key, config.num_layers)),
    )
    x, finals = stack.outputs, stack.carry  # the memory [b, s, k h]; every layer's final carry
    if config.bidirectional:
        finals = [_bridge(bridge, *final) for bridge, final in zip(params["bridge"], finals, strict=True)]
    att = params["attention"]
    if config.attention == "bahdanau":
        keys_ = x @ att["w_h"]  # [b, s, a]
    elif config.attention == "luong":
        keys_ = x @ att["w_a"]  # [b, s, h]: m_s W_a^T, so that e_ts = s_t . keys_s
    else:
        keys_ = x
    feed_size = config.hidden_size if config.attention == "luong" else 0
    feed = jnp.zeros((src.shape[0], feed_size), x.dtype)
    return Memory(x, keys_, length_mask(src_lengths, src.shape[1])), DecoderState(tuple(finals), feed)


def _bridge(bridge: list, forward, backward):
    """``tanh([fwd ; bwd] B + b)`` leaf by leaf of a layer's final carries (module docstring)."""
    f_leaves, treedef = jax.tree.flatten(forward)
    b_leaves = treedef.flatten_up_to(backward)
    bridged = []
    for p, f, b in zip(bridge, f_leaves, b_leaves, strict=True):
        z = jnp.concatenate([f, b], axis=-1) @ p["w"]
        bridged.append(jnp.tanh(z + jnp.broadcast_to(p["b"], z.shape)))
    return jax.tree.unflatten(treedef, bridged)


def attend(scores: jax.Array, mask: jax.Array, values: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(c [b, k h], alpha [b, s])``: the masked softmax of ``scores [b, s]`` and the weighted sum of ``values``."""
    scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    alpha = jax.nn.softmax(scores, axis=-1)  # exp(min - max) underflows: exactly 0 at masked positions
    return jnp.einsum("bs,bsd->bd", alpha, values), alpha


def decoder_step(
    config: Seq2SeqConfig, params: dict, memory: Memory, state: DecoderState, g: jax.Array
) -> tuple[DecoderState, jax.Array, jax.Array]:
    """One decoder step on the embedded previous token ``g [b, e]``: ``(state, o_t [b, |o|], alpha_t [b, s])``.

    ``alpha_t`` is zero when ``attention="none"``.
    """
    cell = model_cell(config)
    att = params["attention"]
    alpha = jnp.zeros(memory.mask.shape, g.dtype)
    if config.attention == "bahdanau":
        query = precision.dot(hidden_state(state.layers[-1]), att["w_s"], att["w_s"].dtype)  # [b, a]
        scores = jnp.tanh(memory.keys + query[:, None, :]) @ att["v"]  # [b, s]
        context, alpha = attend(scores, memory.mask, memory.values)
        x = jnp.concatenate([g, context], axis=-1)
    elif config.attention == "luong":
        x = jnp.concatenate([g, state.feed], axis=-1)
    else:
        x = g
    carries = []
    for layer_params, carry in zip(params["decoder"], state.layers, strict=True):
        carry, x = step_input(cell, layer_params, carry, x)
        carries.append(carry)
    feed = state.feed
    if config.attention == "bahdanau":
        output = jnp.concatenate([x, context], axis=-1)
    elif config.attention == "luong":
        scores = jnp.einsum("bsh,bh->bs", memory.keys, x)
        context, alpha = attend(scores, memory.mask, memory.values)
        output = feed = jnp.tanh(jnp.concatenate([context, x], axis=-1) @ att["w_c"])
    else:
        output = x
    return DecoderState(tuple(carries), feed), output, alpha


def _teacher_forced_cell(config: Seq2SeqConfig) -> Cell:
    """The decoder as a ``Cell`` whose params are ``(params, memory)`` and whose input is ``g_t``, for ``unroll``."""

    def step(bound, state, g):
        params, memory = bound
        state, output, _ = decoder_step(config, params, memory, state, g)
        return state, output

    def no_init(*_):
        raise NotImplementedError("the decoder starts from the encoder's state")

    return Cell(no_init, step, init_carry=no_init, name="decoder")


def apply(
    config: Seq2SeqConfig,
    params: dict,
    src: jax.Array,
    src_lengths: jax.Array,
    tgt_in: jax.Array,
    tgt_lengths: jax.Array,
    key: jax.Array | None = None,
) -> jax.Array:
    """Teacher-forced logits ``[b, t, V]`` float32.

    Args:
      config: the model.
      params: its parameters.
      src: ``[b, s]`` int source ids, ignored at ``s >= src_lengths``.
      src_lengths: ``[b]`` int, 1..s.
      tgt_in: ``[b, t]`` int, ``<bos> y_1 .. y_n`` then anything.
      tgt_lengths: ``[b]`` int, n + 1 (the steps that predict ``y_1 .. y_n <eos>``).
      key: dropout key (training); ``None`` (evaluation) applies no dropout.
    """
    keys = (None, None) if key is None else jax.random.split(key)
    memory, state = encode(config, params, src, src_lengths, keys[0])
    return teacher_forced(config, params, memory, state, tgt_in, tgt_lengths, keys[1])


def teacher_forced(
    config: Seq2SeqConfig,
    params: dict,
    memory: Memory,
    state: DecoderState,
    tgt_in: jax.Array,
    tgt_lengths: jax.Array,
    key: jax.Array | None = None,
) -> jax.Array:
    """The decoder's logits ``[b, t, V]`` from ``encode``'s memory and state, reading ``tgt_in [b, t]`` (``apply``)."""
    keys = (None, None) if key is None else jax.random.split(key)
    g = dropout(params["tgt_embedding"][tgt_in], config.dropout, keys[0])  # [b, t, e]
    outputs = unroll(
        _teacher_forced_cell(config), (params, memory), g, initial_carry=state, lengths=tgt_lengths
    ).outputs  # [b, t, |o|]
    logits = dropout(outputs, config.dropout, keys[1]) @ params["out_w"]
    return logits + jnp.broadcast_to(params["out_b"], logits.shape)  # explicit: strict rank promotion


def loss(logits: jax.Array, tgt_out: jax.Array, tgt_lengths: jax.Array) -> jax.Array:
    """Mean cross-entropy in nats over the real target tokens (``<eos>`` included) of ``logits [b, t, V]``."""
    return losses.masked_cross_entropy(logits, tgt_out, length_mask(tgt_lengths, tgt_out.shape[1]))


def batch_loss(config: Seq2SeqConfig):
    """The ``make_training`` loss ``(params, (src, src_lengths, tgt_in, tgt_out, tgt_lengths), key) -> (loss, {})``."""

    def loss_fn(params, batch, key):
        src, src_lengths, tgt_in, tgt_out, tgt_lengths = batch
        logits = apply(config, params, src, src_lengths, tgt_in, tgt_lengths, key)
        return loss(logits, tgt_out, tgt_lengths), {}

    return loss_fn


def start(config: Seq2SeqConfig, params: dict, src: jax.Array, src_lengths: jax.Array) -> DecodeCarry:
    """The carry ``seqjax.decoding`` starts from: the decoder state and the memory, batch axis first."""
    memory, state = encode(config, params, src, src_lengths)
    return DecodeCarry(state, memory)


def decode_step(config: Seq2SeqConfig, params: dict):
    """``step(carry, tokens [b]) -> (carry, log_probs [b, V], alpha [b, s])`` for ``seqjax.decoding``, no dropout."""

    def step(carry: DecodeCarry, tokens: jax.Array) -> tuple[DecodeCarry, jax.Array, jax.Array]:
        state, output, alpha = decoder_step(config, params, carry.memory, carry.state, params["tgt_embedding"][tokens])
        logits = output @ params["out_w"]
        logits = logits + jnp.broadcast_to(params["out_b"], logits.shape)
        return DecodeCarry(state, carry.memory), jax.nn.log_softmax(logits, axis=-1), alpha

    return step


def num_params(params: Any) -> int:
    return sum(int(leaf.size) for leaf in jax.tree.leaves(params))
