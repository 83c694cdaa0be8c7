"""Cells combined: stacked (deep) cells and bidirectional reading."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from seqjax.cells.base import Cell, Params, step_input
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
        sizes = [input_size] + [hidden_size] * (len(cells) - 1)
        return tuple(c.init_params(k, d, hidden_size, dtype) for c, k, d in zip(cells, keys, sizes, strict=True))

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
    return Cell(init_params, step, init_carry, project, name="stacked_" + "_".join(c.name for c in cells))


def init_layers(
    cell: Cell, keys: Sequence[jax.Array], input_size: int, hidden_size: int, both_ways: bool
) -> list[Params]:
    """The params of ``len(keys)`` stacked layers of ``cell``, layer l from ``keys[l]``.

    Layer 0 reads ``input_size`` features, layer l > 0 the ``[k h]`` outputs of the layer below (k = 2 when
    ``both_ways``). A layer read both ways (``bidirectional``) holds ``(forward, backward)`` params, drawn
    from ``split(keys[l])``; a one-way layer holds the forward params of the same key.
    """
    layers = []
    for layer, key in enumerate(keys):
        size = input_size if layer == 0 else (2 if both_ways else 1) * hidden_size
        k_forward, k_backward = jax.random.split(key)
        forward = cell.init_params(k_forward, size, hidden_size)
        layers.append((forward, cell.init_params(k_backward, size, hidden_size)) if both_ways else forward)
    return layers


def bidirectional(
    forward_cell: Cell,
    backward_cell: Cell,
    params: tuple[Params, Params],
    xs: jax.Array,
    *,
    lengths: jax.Array | None = None,
    **unroll_kwargs,
) -> Unrolled:
    """Reads ``xs [b, t, d]`` left to right and right to left; outputs concatenated ``[b, t, 2h]``.

    The backward direction starts at each sequence's own last element (``lengths``), so padding is
    never read into its state. The final carry is ``(forward final carry, backward final carry)``,
    the latter being the backward state after reading position 0.
    """
    forward = unroll(forward_cell, params[0], xs, lengths=lengths, **unroll_kwargs)
    backward = unroll(backward_cell, params[1], xs, lengths=lengths, reverse=True, **unroll_kwargs)
    carries = None
    if forward.carries is not None:
        carries = (forward.carries, backward.carries)
    outputs = jnp.concatenate([forward.outputs, backward.outputs], axis=-1)
    return Unrolled((forward.carry, backward.carry), outputs, carries)


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout: each entry kept with probability ``1 - rate`` and scaled by ``1 / (1 - rate)``.

    ``key=None`` (evaluation) or ``rate == 0`` returns ``x`` unchanged.
    """
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)
