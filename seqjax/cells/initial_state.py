"""A learned initial state: any cell whose carry before the first step is a parameter instead of zeros.

``learned_initial_state(cell)`` is a ``Cell`` with the same step, carry structure and options, whose params are::

    {"cell": cell's params, "initial": a carry for one example}    e.g. LSTMCarry(hidden [h], cell [h]) for an LSTM

and whose ``init_carry(params, batch_shape)`` broadcasts ``initial`` over ``batch_shape``. ``initial`` starts at zero,
so an untrained one computes exactly what ``cell`` does from its zero carry. It is learned when ``init_carry`` runs
inside the differentiated function, as it does whenever ``seqjax.unroll`` is called without ``initial_carry``:
the gradient with respect to ``initial`` is then the sum over the batch of dL/dcarry_0. Every example (and, with
``resets``, every segment: ``reset_to="initial"``) starts from the same learned state.

An explicit opt-in: the zero carry needs no parameters (Flax issue 868 asks for this option).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqjax.cells.base import Cell, Params, init_in_dtype
from seqjax.cells.linear import Linear


def _on_inner(fn):
    """``fn(params, ...)`` of the inner cell, called with the outer params ``{"cell": ..., "initial": ...}``."""
    return None if fn is None else (lambda params, *args, **kwargs: fn(params["cell"], *args, **kwargs))


def learned_initial_state(cell: Cell) -> Cell:
    """``cell`` with a learned carry before the first step (module docstring).

    Args:
      cell: any cell, built-in or a user's; its carry for ``batch_shape=()`` (``cell.init_carry(params, ())``) gives
        the shape of each leaf of ``initial``.

    Returns:
      A ``Cell`` named ``cell.name + "_h0"`` whose ``init_params(key, d, h)`` gives ``cell``'s params for the same key
      (unchanged) and ``initial`` zeros in the params' dtype; ``init_carry`` casts each leaf to the dtype of
      ``cell``'s own zero carry (float32 or wider under mixed precision). ``project``, ``fused``, ``linear`` and
      ``readout`` are ``cell``'s, reading ``params["cell"]``, and ``output_size`` is ``cell``'s (a linear cell's
      log-space form too: ``seqjax.scan`` adds a start of either sign outside the logarithms).
    """

    def init_params(key, input_size: int, hidden_size: int, dtype=jnp.float32) -> Params:
        inner = init_in_dtype(cell.init_params, key, input_size, hidden_size, dtype)
        initial = jax.tree.map(lambda z: jnp.zeros(z.shape, dtype), cell.init_carry(inner, ()))
        return {"cell": inner, "initial": initial}

    def init_carry(params, batch_shape):
        zeros = cell.init_carry(params["cell"], tuple(batch_shape))
        return jax.tree.map(lambda z, s: jnp.broadcast_to(s.astype(z.dtype), z.shape), zeros, params["initial"])

    if getattr(cell.init_carry, "derived", False):  # a user cell's derived one-array carry: unroll still checks it
        init_carry.derived = True

    linear = None
    if cell.linear is not None:
        linear = Linear(_on_inner(cell.linear.coefficients), _on_inner(cell.linear.log_coefficients))
    return Cell(
        init_params,
        _on_inner(cell.step),
        init_carry,
        _on_inner(cell.project),
        name=cell.name + "_h0",
        unroll=cell.unroll,
        fused=_on_inner(cell.fused),
        linear=linear,
        output_size=cell.output_size,
        readout=_on_inner(cell.readout),
    )
