"""The task grid's model: any cell, or a causal Transformer, between an input layer and a readout.

Dimension legend: b batch, t time, V input vocabulary (token tasks) or d input features, h width (``hidden``),
c classes, L layers (``num_layers``), k = 2 for a bidirectional recurrent stack, else 1.

Inputs are token ids ``[b, t]`` (one-hot, V columns) or features ``[b, t, d]``. Three bodies:

    plain        y = unroll_layers(cell, x)                    L layers of the cell, the cell's own input
                                                               projection reading x; [b, t, k h]
    residual     x_0 = x W_in + b_in                           [b, t, h]; then for each layer l (the block of
                 z   = cell(LN(x_{l-1}))                       the LRU and Griffin papers, lru_stack's layout):
                 z   = gelu(z)
                 x_l = x_{l-1} + (z W_1 + b_1) * sigmoid(z W_2 + b_2)
                 y   = LN(x_L)                                 [b, t, h]
    transformer  y = transformer_encoder(x W_in + b_in,        pre-LN blocks, sinusoidal positions (defined at
                     causal mask)                              any length), h / 64 heads (at least 1); [b, t, h]

and two readouts:

    steps        logits_t = y_t W_out + b_out                  [b, t, c]: an answer at every step
    flatten      logits = [y_1; ...; y_t] W_out + b_out        [b, c]: every step's output read at once, for a
                                                               fixed t (the MNIST-1D recipe)

The plain and residual bodies with a one-way cell, and the transformer body, are causal: ``logits_t`` depends on
the inputs up to t only, so an example of length l <= t is scored at step l - 1 of a longer batch without
padding. ``lengths`` (right padding) serves the bidirectional stack: its backward direction then starts at each
example's own end.

Params: ``{"body": ..., "out": {"kernel", "bias"}}`` with ``"body"`` the plain stack's layers (``init_layers``), the
residual ``{"in", "layers": [{"norm", "cell", "glu_1", "glu_2"}], "final_norm"}``, or the transformer's
``{"in", "encoder"}``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from seqjax import attention, initializers, layers
from seqjax import dense as dense_lib
from seqjax.cells import Cell, cell_by_name, check_outputs_hidden_size, output_size_of
from seqjax.scan import unroll

BODIES = ("plain", "residual", "transformer")
READOUTS = ("steps", "flatten")
INITS = ("seqjax", "pytorch")
TRANSFORMER = "transformer"


@dataclasses.dataclass(frozen=True)
class TaskModelConfig:
    """The model's shape.

    Attributes:
      cell: a cell name for ``cell_by_name`` (built-in or a user's ``module:attr``), or ``"transformer"``.
      inputs: V (token ids in [0, V)) when ``tokens``, else d features per step.
      tokens: whether the inputs are token ids.
      num_classes: c.
      hidden: h.
      num_layers: L.
      body: ``"plain"`` or ``"residual"`` for a cell (``"transformer"`` is implied by ``cell="transformer"``).
      readout: ``"steps"`` or ``"flatten"``.
      length: t, for the flatten readout (its kernel has t k h rows).
      bidirectional: the plain stack read both ways (not causal: only for answers read after the whole input).
      init: ``"seqjax"`` (the cells' own initialisers) or ``"pytorch"`` (plain stack only): every parameter of the
        stack uniform in +-1/sqrt(h), the readout's in +-1/sqrt(its rows), as PyTorch's ``nn.GRU`` and ``nn.Linear``
        start (``initializers.uniform_leaves``).
    """

    cell: str
    inputs: int
    tokens: bool
    num_classes: int
    hidden: int
    num_layers: int = 1
    body: str = "plain"
    readout: str = "steps"
    length: int | None = None
    bidirectional: bool = False
    init: str = "seqjax"

    def __post_init__(self):
        if self.body not in BODIES[:2]:
            raise ValueError(f"unknown body {self.body!r}; known: plain, residual")
        if self.readout not in READOUTS:
            raise ValueError(f"unknown readout {self.readout!r}; known: {', '.join(READOUTS)}")
        if self.readout == "flatten" and not self.length:
            raise ValueError("the flatten readout needs the sequence length")
        if self.bidirectional and (self.body != "plain" or self.cell == TRANSFORMER):
            raise ValueError("bidirectional applies to the plain recurrent stack only")
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; known: {', '.join(INITS)}")
        if self.init == "pytorch" and (self.body != "plain" or self.cell == TRANSFORMER):
            raise ValueError("the pytorch init applies to the plain recurrent stack only")
        if self.kind == "residual":
            check_outputs_hidden_size(self.build_cell(), self.hidden, "the residual stack (each layer's output added)")

    @property
    def kind(self) -> str:
        """``"transformer"``, or the body of a cell."""
        return TRANSFORMER if self.cell == TRANSFORMER else self.body

    @property
    def width(self) -> int:
        """The body's output features: k o for the plain stack (o: the cell's output size, h or an LSTMP's p), else
        h."""
        if self.kind != "plain":
            return self.hidden
        return (2 if self.bidirectional else 1) * output_size_of(self.build_cell(), self.hidden)

    def build_cell(self) -> Cell:
        return cell_by_name(self.cell)

    def encoder(self) -> attention.EncoderConfig:
        heads = max(1, self.hidden // 64)
        return attention.EncoderConfig(self.num_layers, self.hidden, heads, 4 * self.hidden, pre_norm=True,
                                       activation="gelu")  # fmt: skip


def init_params(config: TaskModelConfig, key: jax.Array) -> dict:
    """The parameters (module docstring); a function of ``key`` alone."""
    k_body, k_out, k_in = jax.random.split(key, 3)
    h = config.hidden
    if config.kind == "plain":
        keys = list(jax.random.split(k_body, config.num_layers))
        body = layers.init_layers(config.build_cell(), keys, config.inputs, h, config.bidirectional)
    elif config.kind == "residual":
        cell = config.build_cell()
        blocks = []
        for k_layer in jax.random.split(k_body, config.num_layers):
            k_cell, k_1, k_2 = jax.random.split(k_layer, 3)
            block = {"norm": dense_lib.init_layer_norm(h), "cell": cell.init_params(k_cell, h, h)}
            block |= {"glu_1": dense_lib.init_dense(k_1, h, h), "glu_2": dense_lib.init_dense(k_2, h, h)}
            blocks.append(block)
        body = {"in": dense_lib.init_dense(k_in, config.inputs, h), "layers": blocks,
                "final_norm": dense_lib.init_layer_norm(h)}  # fmt: skip
    else:
        body = {"in": dense_lib.init_dense(k_in, config.inputs, h),
                "encoder": attention.init_transformer_encoder(k_body, config.encoder())}  # fmt: skip
    rows = config.width * (config.length if config.readout == "flatten" else 1)
    out = dense_lib.init_dense(k_out, rows, config.num_classes)
    if config.init == "pytorch":
        body = initializers.uniform_leaves(jax.random.fold_in(k_body, 1), body, h**-0.5)
        out = initializers.uniform_leaves(jax.random.fold_in(k_out, 1), out, rows**-0.5)
    return {"body": body, "out": out}


def features(config: TaskModelConfig, inputs: jax.Array) -> jax.Array:
    """``[b, t, V]`` one-hot float32 of token ids ``[b, t]``, or the features ``[b, t, d]`` as they are."""
    return jax.nn.one_hot(inputs, config.inputs, dtype=jnp.float32) if config.tokens else inputs


def body(config: TaskModelConfig, params: dict, x: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
    """The body's outputs ``[b, t, k h]`` on float features ``x [b, t, V or d]`` (``features``; module docstring)."""
    if config.kind == "plain":
        both = config.bidirectional
        return layers.unroll_layers(config.build_cell(), params, x, both_ways=both, lengths=lengths).outputs
    if config.kind == "residual":
        cell = config.build_cell()
        x = dense_lib.dense(params["in"], x)
        for block in params["layers"]:
            z = unroll(cell, block["cell"], dense_lib.layer_norm(block["norm"], x), lengths=lengths).outputs
            z = jax.nn.gelu(z, approximate=True)
            x = x + dense_lib.dense(block["glu_1"], z) * jax.nn.sigmoid(dense_lib.dense(block["glu_2"], z))
        return dense_lib.layer_norm(params["final_norm"], x)
    z = dense_lib.dense(params["in"], x)
    causal = attention.causal_mask(z.shape[1])
    return attention.transformer_encoder(params["encoder"], z, lengths, config=config.encoder(), mask=causal)


def apply(config: TaskModelConfig, params: dict, inputs: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
    """Logits: ``[b, t, c]`` (``readout="steps"``) or ``[b, c]`` (``"flatten"``)."""
    return apply_features(config, params, features(config, inputs), lengths)


def apply_features(config: TaskModelConfig, params: dict, x: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
    """``apply`` on the float features ``x [b, t, V or d]`` (``features``): what input gradients differentiate."""
    y = body(config, params["body"], x, lengths)
    if config.readout == "flatten":
        y = y.reshape(y.shape[0], -1)
    return dense_lib.dense(params["out"], y)
