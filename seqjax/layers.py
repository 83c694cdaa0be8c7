"""Cells combined: the deep recurrent stack, stacked (deep) cells and bidirectional reading.

Two ways to stack layers of cells:

- ``init_layers`` and ``unroll_layers``: the deep stack of the models (language model, classifier, tagger,
  seq2seq encoder). One ``unroll`` per layer and direction, so a layer may be read both ways and its
  outputs dropped out (a fresh mask per element and step, or one per sequence) before the next layer reads them.
- ``stacked``: the layers as one ``Cell`` stepped by a single scan, layer l reading layer l-1's output at the
  same step, so that the unroller's options (probes, resets, truncated BPTT) see the whole stack's state.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from seqjax import random_bits
from seqjax.cells.base import Carry, Cell, Params, init_in_dtype, output_size_of, step_input
from seqjax.scan import Unrolled, unroll


def stacked(cells: Sequence[Cell]) -> Cell:
    """A deep cell: layer l reads layer l-1's output at the same step.

        carry^l_t, y^l_t = cell_l.step(params_l, carry^l_{t-1}, y^{l-1}_t),   y^0_t = x_t,   y_t = y^L_t

    The result is itself a ``Cell`` (params and carry are tuples with one entry per layer), so it
    works with ``unroll``, the gradient probes and everything else. Its carry is the whole stack's
    state, so a probe on layer l < L measures the gradient w.r.t. the state that layer l hands to
    the next time step; the path into layer l+1 at the same step is not part of it (the top layer's
    probe, which is also the output, is the total dL/dh^L_t). The first
    layer's input projection, if any, is hoisted out of the scan; the others run inside the step.
    Every layer has ``hidden_size`` units.
    """
    cells = tuple(cells)
    if not cells:
        raise ValueError("stacked needs at least one cell")
    first = cells[0]

    def init_params(key, input_size: int, hidden_size: int, dtype=jnp.float32):
        keys = jax.random.split(key, len(cells))
        sizes = [input_size] + [output_size_of(c, hidden_size) for c in cells[:-1]]
        layers = zip(cells, keys, sizes, strict=True)
        return tuple(init_in_dtype(c.init_params, k, d, hidden_size, dtype) for c, k, d in layers)

    def init_carry(params, batch_shape):
        return tuple(c.init_carry(p, batch_shape) for c, p in zip(cells, params, strict=True))

    def step(params, carries, u):
        new_carry, y = first.step(params[0], carries[0], u)
        new_carries = [new_carry]
        for cell, p, carry in zip(cells[1:], params[1:], carries[1:], strict=True):
            carry, y = step_input(cell, p, carry, y)
            new_carries.append(carry)
        return tuple(new_carries), y

    project = None if first.project is None else (lambda params, xs: first.project(params[0], xs))
    name = "stacked_" + "_".join(c.name for c in cells)
    return Cell(init_params, step, init_carry, project, name=name, output_size=cells[-1].output_size)


def bidirectional(
    forward_cell: Cell,
    backward_cell: Cell,
    params: tuple[Params, Params],
    xs: jax.Array,
    *,
    lengths: jax.Array | None = None,
    initial_carry: tuple[Carry, Carry] | None = None,
    **unroll_kwargs,
) -> Unrolled:
    """Reads ``xs [b, t, d]`` left to right and right to left; outputs concatenated ``[b, t, 2o]``
    (o: each direction's output size).

    The backward direction starts at each sequence's own last element (``lengths``), so padding is
    never read into its state. The final carry is ``(forward final carry, backward final carry)``,
    the latter being the backward state after reading position 0; ``initial_carry``, if given, is
    such a pair (zeros if omitted).
    """
    forward_carry, backward_carry = (None, None) if initial_carry is None else initial_carry
    forward = unroll(forward_cell, params[0], xs, initial_carry=forward_carry, lengths=lengths, **unroll_kwargs)
    backward = unroll(
        backward_cell, params[1], xs, initial_carry=backward_carry, lengths=lengths, reverse=True, **unroll_kwargs
    )
    carries = None
    if forward.carries is not None:
        carries = (forward.carries, backward.carries)
    outputs = jnp.concatenate([forward.outputs, backward.outputs], axis=-1)
    return Unrolled((forward.carry, backward.carry), outputs, carries)


def init_layers(
    cell: Cell, keys: Sequence[jax.Array], input_size: int, hidden_size: int, both_ways: bool
) -> list[Params]:
    """The params of ``len(keys)`` stacked layers of ``cell``, layer l from ``keys[l]``.

    Layer 0 reads ``input_size`` features, layer l > 0 the ``[k o]`` outputs of the layer below (k = 2 when
    ``both_ways``; o = ``output_size_of(cell, hidden_size)``: ``hidden_size``, or the projection's size of an
    LSTM with ``proj_size``). A layer read both ways (``bidirectional``) holds ``(forward, backward)`` params, drawn
    from ``split(keys[l])``; a one-way layer holds the forward params of the same key (``split(keys[l])[0]``).
    ``unroll_layers`` runs them.
    """
    layers = []
    for layer, key in enumerate(keys):
        size = input_size if layer == 0 else (2 if both_ways else 1) * output_size_of(cell, hidden_size)
        k_forward, k_backward = jax.random.split(key)
        forward = cell.init_params(k_forward, size, hidden_size)
        layers.append((forward, cell.init_params(k_backward, size, hidden_size)) if both_ways else forward)
    return layers


# Options of ``unroll`` that differ per layer or direction, which ``unroll_layers`` therefore cannot forward.
_PER_LAYER_OPTIONS = ("initial_carry", "reverse", "return_carries", "probe")


def unroll_layers(
    cell: Cell,
    layers: Sequence[Params],
    xs: jax.Array,
    *,
    both_ways: bool = False,
    lengths: jax.Array | None = None,
    initial_carries: Sequence[Carry] | None = None,
    dropout_rates: float | Sequence[float] = 0.0,
    dropout_keys: Sequence[jax.Array | None] | None = None,
    dropout_mask: str = "per_step",
    **unroll_kwargs,
) -> Unrolled:
    """The deep recurrent stack: ``len(layers)`` layers of ``cell`` over ``xs [b, t, d]``, one unroll each.

    For layers l = 0 .. L-1, with ``y^{-1} = xs``::

        u^l          = drop(y^{l-1}, dropout_rates[l], dropout_keys[l])     dropout on each layer's input
        c^l, y^l     = unroll(cell, layers[l], u^l, c^l_0)                  y^l [b, t, o]
        both ways:     y^l = [fwd y^l ; bwd y^l]  (``bidirectional``)       y^l [b, t, 2o]

    with o the cell's output size (``output_size_of``: h, or p for an LSTM with ``proj_size=p``).

    ``drop`` is ``dropout``, none on the recurrent paths: a fresh mask per element and step (``dropout_mask=
    "per_step"``, Zaremba et al.) or one per sequence shared by all its steps (``"per_sequence"``, variational
    dropout); a ``None`` key or a zero rate leaves the input as it is. No dropout is applied to the top layer's
    outputs (a readout applies its own).

    Args:
      cell: the cell of every layer and direction.
      layers: per layer, the cell's params, or ``(forward, backward)`` params when ``both_ways``, as
        ``init_layers`` makes them.
      xs: ``[b, t, d]`` inputs of layer 0.
      both_ways: whether every layer is read in both directions.
      lengths: ``[b]`` int true lengths of right-padded sequences (``unroll``): padded steps hold the
        carries and give zero outputs; the backward direction starts at each sequence's own end.
      initial_carries: one carry per layer (a ``(forward, backward)`` pair when ``both_ways``); zeros if
        omitted.
      dropout_rates: the rate on each layer's input: one for every layer, or one per layer.
      dropout_keys: one key (or ``None``) per layer; ``None`` applies no dropout (evaluation).
      dropout_mask: ``"per_step"`` or ``"per_sequence"`` (``dropout_shared_axes``).
      **unroll_kwargs: options every layer's ``unroll`` takes alike (``unroll``, ``remat``, ``hoist``,
        ``fused``, ``time_major``).

    Returns:
      ``Unrolled(carry, outputs, None)``: ``carry`` a tuple of every layer's final carry (bottom first; a
      ``(forward, backward)`` pair when ``both_ways``), ``outputs`` the top layer's ``[b, t, k o]``
      (k = 2 when ``both_ways``), zero at padded steps.
    """
    num_layers = len(layers)
    if not num_layers:
        raise ValueError("unroll_layers needs at least one layer")
    rates = list(dropout_rates) if isinstance(dropout_rates, Sequence) else [dropout_rates] * num_layers
    keys = [None] * num_layers if dropout_keys is None else list(dropout_keys)
    carries = [None] * num_layers if initial_carries is None else list(initial_carries)
    for name, values in (("dropout_rates", rates), ("dropout_keys", keys), ("initial_carries", carries)):
        if len(values) != num_layers:
            raise ValueError(f"{name} has {len(values)} entries for {num_layers} layers")
    clashes = sorted(set(unroll_kwargs) & set(_PER_LAYER_OPTIONS))
    if clashes:
        raise ValueError(f"unroll_layers cannot pass {', '.join(clashes)} to every layer alike")
    shared_axes = dropout_shared_axes(dropout_mask, unroll_kwargs.get("time_major", False))
    finals = []
    for params, rate, key, carry in zip(layers, rates, keys, carries, strict=True):
        xs = dropout(xs, rate, key, shared_axes)
        if both_ways:
            result = bidirectional(cell, cell, params, xs, lengths=lengths, initial_carry=carry, **unroll_kwargs)
        else:
            result = unroll(cell, params, xs, initial_carry=carry, lengths=lengths, **unroll_kwargs)
        xs = result.outputs  # [b, t, k o]
        finals.append(result.carry)
    return Unrolled(tuple(finals), xs, None)


def dropout(x: jax.Array, rate: float, key: jax.Array | None, shared_axes: Sequence[int] = ()) -> jax.Array:
    """Inverted dropout: each entry kept with probability ``1 - rate`` and scaled by ``1 / (1 - rate)``.

    ``shared_axes``: axes along which one draw is shared (size 1 in the mask's shape). ``()`` draws a fresh
    mask per entry (Zaremba et al.); the time axis of ``[b, t, d]`` (``(1,)``) gives one mask per sequence,
    the same at every step (variational or "locked" dropout, Gal & Ghahramani 2016, AWD-LSTM's
    ``LockedDropout``). ``key=None`` (evaluation) or ``rate == 0`` returns ``x`` unchanged.
    """
    if key is None or rate == 0.0:
        return x
    axes = {axis % x.ndim for axis in shared_axes}
    mask_shape = tuple(1 if axis in axes else size for axis, size in enumerate(x.shape))
    keep = random_bits.bernoulli(key, 1.0 - rate, mask_shape)  # jax.random.bernoulli's draw, fused
    return jnp.where(keep, x / (1.0 - rate), 0.0)


DROPOUT_MASKS = ("per_step", "per_sequence")


def dropout_shared_axes(mask: str, time_major: bool = False) -> tuple[int, ...]:
    """``dropout``'s ``shared_axes`` for activations ``[b, t, d]`` (``[t, b, d]`` when ``time_major``):
    ``"per_step"`` a fresh mask per element and step, ``"per_sequence"`` one mask per sequence."""
    if mask not in DROPOUT_MASKS:
        raise ValueError(f"unknown dropout mask {mask!r}; known: {', '.join(DROPOUT_MASKS)}")
    return () if mask == "per_step" else ((0,) if time_major else (1,))
