"""The recurrent language model of the lecture notes and of Zaremba et al. (2014).

For tokens ``w_1 .. w_T`` (ids in ``[0, V)``) and ``L`` layers of any seqjax cell::

    x_t       = E~[w_t]                                       E [V, e]   (embedding lookup, not a one-hot product)
    h^1_t     = cell_1(h^1_{t-1}, drop_0(x_t); W~^1_hh)       seqjax.layers.unroll_layers: one unroll per layer
    h^l_t     = cell_l(h^l_{t-1}, drop_{l-1}(h^{l-1}_t); W~^l_hh)
    logits_t  = drop_L(h^L_t) W_out + b_out                   W_out [h, V], or E^T with tied weights (e = h)
    p(w_{t+1} | w_1..w_t) = softmax(logits_t)

``drop_l`` is dropout on the non-recurrent connections only, at rate ``dropout`` on each, or at AWD-LSTM's
separate rates ``dropout_rates`` (the embedding output, between layers, the top output): a fresh mask per
element and time step (``dropout_mask="per_step"``, Zaremba et al.) or one mask per sequence shared by all
its steps (``"per_sequence"``: variational dropout, AWD-LSTM's ``LockedDropout``). AWD-LSTM's two weight
regularisers (``seqjax.weight_dropout``) are options: ``W~_hh`` is ``W_hh`` under DropConnect
(``weight_drop``, one mask per layer and batch) and ``E~`` the embedding with whole word types dropped
(``embedding_dropout``, one mask per batch; with tied weights the output layer reads the undropped
``E^T``, as AWD-LSTM's does). Without them ``W~ = W`` and ``E~ = E``; at evaluation all are off.
Training is teacher-forced: the inputs are the true tokens, the targets the same stream one step later.

With ``proj_size=p`` every layer is an LSTMP: ``h^l_t`` has p features (``W_out [p, V]``).

Parameters: ``{"embedding": [V, e], "layers": [cell params per layer], "out_b": [V]}`` plus
``"out_w": [h, V]`` unless tied. Carries: a tuple with one cell carry ``[B, ...]`` per layer.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from seqjax.cells import Cell, cell_by_name, lstm
from seqjax.layers import DROPOUT_MASKS, dropout, dropout_shared_axes, init_layers, unroll_layers
from seqjax.weight_dropout import drop_connect, embed_with_dropout, has_recurrent_weights

CELL_INITS = ("uniform", "cell")
PROJECTED_CELLS = ("lstm", "lstm_peephole")  # the cells proj_size applies to


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """A language model's shape and regularisation.

    Attributes:
      vocab_size: V.
      cell: a cell name for ``seqjax.cells.cell_by_name`` (built-in, or ``"module:attr"`` for your own).
      num_layers: L stacked layers.
      hidden_size: h of every layer.
      proj_size: p > 0: every LSTM layer projects its hidden state to p features (LSTMP, Sak et al. 2014;
        ``seqjax.lstm(proj_size=p)``), which recur, feed the layer above and the readout ``[p, V]``; 0: none.
      embed_size: e; ``None`` means ``hidden_size``.
      dropout: the probability of dropping a non-recurrent activation (Zaremba's keep-prob is 1 - dropout).
      dropout_rates: ``L + 1`` rates, one per connection ``drop_0 .. drop_L`` (AWD-LSTM's dropouti, dropouth for
        each layer below the top, dropout); ``None``: ``dropout`` on each.
      dropout_mask: ``"per_step"`` (a fresh mask per element and step) or ``"per_sequence"`` (variational).
      weight_drop: DropConnect probability on every layer's ``w_hh`` (the cell must have one).
      embedding_dropout: the probability of dropping a word type (a row of the embedding) for a batch.
      tie_weights: output weights = embedding^T (Press & Wolf 2017); needs e = h (e = p with a projection).
      init_scale: every embedding and output parameter is drawn from U(-s, s); with ``cell_init="uniform"``
        every cell parameter too (Zaremba et al. initialise everything this way, biases included).
      cell_init: ``"uniform"`` (above) or ``"cell"``: the cells' own initialisers (orthogonal recurrent
        weights, forget bias 1 for the LSTM).
      reset_token: documents packed in one stream: the id of the token each starts with (PTB's ``<eos>`` makes
        every sentence a document). The carry entering a step that reads it is zeros, in every layer
        (``unroll(resets=..., reset_to="zeros")``), so no state crosses a document boundary, within a window or
        from the window before. ``None``: one running state through the stream (Zaremba et al.).
    """

    vocab_size: int
    cell: str = "lstm"
    num_layers: int = 2
    hidden_size: int = 200
    proj_size: int = 0
    embed_size: int | None = None
    dropout: float = 0.0
    dropout_rates: tuple[float, ...] | None = None
    dropout_mask: str = "per_step"
    weight_drop: float = 0.0
    embedding_dropout: float = 0.0
    tie_weights: bool = False
    init_scale: float = 0.1
    cell_init: str = "uniform"
    reset_token: int | None = None

    def __post_init__(self):
        if self.vocab_size < 1 or self.num_layers < 1 or self.hidden_size < 1:
            raise ValueError(f"vocab_size, num_layers and hidden_size must be >= 1: {self}")
        for name in ("dropout", "weight_drop", "embedding_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.dropout_rates is not None:  # a list given is kept as a tuple: the config is hashed
            object.__setattr__(self, "dropout_rates", tuple(float(rate) for rate in self.dropout_rates))
        if self.dropout_rates is not None and not all(0 <= rate < 1 for rate in self.dropout_rates):
            raise ValueError(f"dropout_rates must be in [0, 1), got {self.dropout_rates}")
        if self.dropout_mask not in DROPOUT_MASKS:
            raise ValueError(f"unknown dropout_mask {self.dropout_mask!r}; known: {', '.join(DROPOUT_MASKS)}")
        check_recurrent_options(self.cell, self.num_layers, self.hidden_size, self.proj_size, self.weight_drop,
                                self.dropout_rates)  # fmt: skip
        if self.cell_init not in CELL_INITS:
            raise ValueError(f"unknown cell_init {self.cell_init!r}; known: {', '.join(CELL_INITS)}")
        if self.reset_token is not None and not 0 <= self.reset_token < self.vocab_size:
            raise ValueError(f"reset_token must be a token id in [0, {self.vocab_size}), got {self.reset_token}")
        if not self.init_scale > 0:
            raise ValueError(f"init_scale must be positive, got {self.init_scale}")
        if self.tie_weights and self.embedding_size != self.output_size:
            raise ValueError(
                f"tied weights need embed_size == the top layer's output size, got {self.embedding_size} and "
                f"{self.output_size}"
            )

    @property
    def embedding_size(self) -> int:
        return self.hidden_size if self.embed_size is None else self.embed_size

    @property
    def output_size(self) -> int:
        """The features of each layer's output: p with a projection, else h."""
        return self.proj_size or self.hidden_size

    @property
    def stochastic(self) -> bool:
        """Whether training draws random masks (needs a key)."""
        return max(*self.connection_dropouts, self.weight_drop, self.embedding_dropout) > 0

    @property
    def connection_dropouts(self) -> tuple[float, ...]:
        """The rates of ``drop_0 .. drop_L``."""
        return (self.dropout,) * (self.num_layers + 1) if self.dropout_rates is None else tuple(self.dropout_rates)


def check_recurrent_options(
    cell: str, num_layers: int, hidden_size: int, proj_size: int, weight_drop: float, dropout_rates
) -> None:
    """The options that depend on the cell and the layers, checked once for ``LMConfig`` and the experiment's flags:
    ``ValueError`` whose one line starts with the option's name."""
    if dropout_rates is not None and len(dropout_rates) != num_layers + 1:
        raise ValueError(f"dropout_rates needs num_layers + 1 = {num_layers + 1} rates, got {len(dropout_rates)}")
    if weight_drop and not has_recurrent_weights(cell_by_name(cell)):
        raise ValueError(f"weight_drop needs a cell with a 'w_hh' parameter; cell {cell} has none")
    if proj_size and cell not in PROJECTED_CELLS:
        raise ValueError(f"proj_size projects an LSTM's hidden state ({', '.join(PROJECTED_CELLS)}), not {cell}'s")
    if not 0 <= proj_size <= hidden_size:
        raise ValueError(f"proj_size={proj_size} must be in [0, hidden_size = {hidden_size}]")


@functools.cache
def lm_cell(config: LMConfig) -> Cell:
    """The recurrent cell every layer of ``config`` uses."""
    if config.proj_size:  # cell_by_name's LSTM (forget bias 1, orthogonal recurrent blocks), projected
        return lstm(1.0, peephole=config.cell == "lstm_peephole", proj_size=config.proj_size)
    return cell_by_name(config.cell)


def init_params(config: LMConfig, key: jax.Array) -> dict:
    """The model's parameters (see the module docstring), float32."""
    cell = lm_cell(config)
    k_embed, k_out, k_bias, *k_layers = jax.random.split(key, 3 + config.num_layers)
    scale = config.init_scale

    def uniform(k, shape):
        return jax.random.uniform(k, shape, jnp.float32, -scale, scale)

    layers = init_layers(cell, k_layers, config.embedding_size, config.hidden_size, both_ways=False)
    if config.cell_init == "uniform":
        # Every leaf redrawn from the second half of the layer's key (init_layers draws a one-way layer from the first).
        for layer, k in enumerate(k_layers):
            leaves, treedef = jax.tree.flatten(layers[layer])
            keys = jax.random.split(jax.random.split(k)[1], len(leaves))
            uniform_leaves = [uniform(k_leaf, leaf.shape) for k_leaf, leaf in zip(keys, leaves, strict=True)]
            layers[layer] = jax.tree.unflatten(treedef, uniform_leaves)
    params = {
        "embedding": uniform(k_embed, (config.vocab_size, config.embedding_size)),
        "layers": layers,
        "out_b": uniform(k_bias, (config.vocab_size,)),
    }
    if not config.tie_weights:
        params["out_w"] = uniform(k_out, (config.output_size, config.vocab_size))
    return params


def init_carry(config: LMConfig, params: dict, batch_size: int) -> tuple:
    """Zero carries, one per layer, for ``batch_size`` parallel streams."""
    cell = lm_cell(config)
    return tuple(cell.init_carry(layer, (batch_size,)) for layer in params["layers"])


def output_weights(config: LMConfig, params: dict) -> jax.Array:
    """``W_out [h, V]``: its own parameter, or the embedding transposed when tied."""
    return params["embedding"].T if config.tie_weights else params["out_w"]


def apply(
    config: LMConfig, params: dict, carries: tuple, tokens: jax.Array, key: jax.Array | None = None
) -> tuple[jax.Array, tuple]:
    """Logits for the next token at every position, and the carries after the last one.

    Args:
      config: the model.
      params: its parameters.
      carries: one carry per layer, ``[B, ...]`` (``init_carry`` for a fresh start).
      tokens: ``[B, T]`` int ids.
      key: the key of every dropout mask; ``None`` (evaluation, sampling) applies none.

    Returns:
      ``(logits [B, T, V], carries)``.
    """
    num_keys = config.num_layers + 1
    keys = [None] * num_keys if key is None else list(jax.random.split(key, num_keys))
    # keys[l] drops layer l's input (the embeddings for l = 0), keys[L] the top layer's outputs; the weight masks
    # come from a fold of the key, so the activation masks are those of a run without them.
    weight_keys = [None] * num_keys if key is None else list(jax.random.split(jax.random.fold_in(key, 1), num_keys))
    # weight_keys[l] drops layer l's w_hh, weight_keys[L] word types of the embedding.
    layers = [drop_connect(p, config.weight_drop, k) for p, k in zip(params["layers"], weight_keys[:-1], strict=True)]
    packing = {} if config.reset_token is None else {"resets": tokens == config.reset_token, "reset_to": "zeros"}
    stack = unroll_layers(
        lm_cell(config),
        layers,
        embed_with_dropout(params["embedding"], tokens, config.embedding_dropout, weight_keys[-1]),  # [B, T, e]
        initial_carries=carries,
        dropout_rates=config.connection_dropouts[:-1],
        dropout_keys=keys[:-1],
        dropout_mask=config.dropout_mask,
        **packing,
    )
    top_rate = config.connection_dropouts[-1]
    x = dropout(stack.outputs, top_rate, keys[-1], dropout_shared_axes(config.dropout_mask))  # [B, T, h]
    logits = x @ output_weights(config, params)
    logits = logits + jnp.broadcast_to(params["out_b"], logits.shape)  # explicit: strict rank promotion
    return logits, stack.carry
