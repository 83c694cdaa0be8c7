"""A seqjax cell as a Flax NNX layer: its parameters held as ``nnx.Param``s, the sequence run by ``seqjax.unroll``.

::

    from flax import nnx
    from seqjax.interop.flax_nnx import Recurrent

    layer = Recurrent(seqjax.lstm(), input_size=d, hidden_size=h, rngs=nnx.Rngs(0))
    ys = layer(xs).outputs                     # xs [b, t, d] -> [b, t, h]: seqjax.unroll(cell, params, xs)

Any ``Cell`` works, a user's ``Cell(init_params, step)`` included, and ``learned_initial_state(cell)`` gives the layer
a learned carry before the first step. ``layer.params`` is the cell's own parameter pytree (the dicts, tuples and
carries of ``cell.init_params``) with each array an ``nnx.Param``, so ``nnx.Optimizer(model, tx, wrt=nnx.Param)``
trains it with the rest of a model, and ``layer.cell_params()`` is the plain pytree ``seqjax`` functions take.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax.cells.base import Cell, Params, init_in_dtype
from seqjax.scan import Unrolled, unroll

Carry = Any


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


class Recurrent(nnx.Module):
    """``seqjax.unroll`` of ``cell`` over ``xs [b, t, d]``, its parameters ``nnx.Param``s.

    Args:
      cell: a ``seqjax.Cell``.
      input_size: d.
      hidden_size: h.
      rngs: ``nnx.Rngs``; one key is drawn from its ``params`` stream for ``cell.init_params``.
      param_dtype: the parameters' dtype (``seqjax.cells.base.init_in_dtype``).
      **unroll_options: ``seqjax.unroll``'s keyword options for every call (``reverse``, ``unroll``, ``remat``,
        ``fused``, ``segment_len``, ``parallel``, ...); a call's own keywords override them.
    """

    def __init__(self, cell: Cell, input_size: int, hidden_size: int, *, rngs: nnx.Rngs,
                 param_dtype=jnp.float32, **unroll_options):  # fmt: skip
        self.cell = cell
        self.unroll_options = tuple(sorted(unroll_options.items()))  # static, hashable: part of the graph definition
        params = init_in_dtype(cell.init_params, rngs.params(), input_size, hidden_size, param_dtype)
        self.params = nnx.data(jax.tree.map(nnx.Param, params))

    def cell_params(self) -> Params:
        """The parameters as the plain pytree of arrays that ``cell`` and ``seqjax.unroll`` take."""
        return jax.tree.map(lambda v: v[...], self.params, is_leaf=_is_variable)

    def init_carry(self, batch_shape: tuple[int, ...]) -> Carry:
        """``cell.init_carry`` over ``batch_shape``: zeros, or a ``learned_initial_state`` cell's learned state."""
        return self.cell.init_carry(self.cell_params(), tuple(batch_shape))

    def __call__(self, xs: jax.Array, *, lengths: jax.Array | None = None, initial_carry: Carry | None = None,
                 **unroll_options) -> Unrolled:  # fmt: skip
        """``seqjax.unroll(cell, params, xs, lengths=lengths, initial_carry=initial_carry, ...)``.

        Args:
          xs: ``[b, t, d]`` (``[t, b, d]`` with ``time_major=True``).
          lengths: ``[b]`` int, true lengths of right-padded sequences (padded outputs are 0).
          initial_carry: the carry before the first step; ``cell.init_carry`` (zeros, or a learned state) if None.
          **unroll_options: more ``seqjax.unroll`` keywords, over the layer's own.

        Returns:
          ``seqjax.Unrolled(carry, outputs [b, t, h], carries)``.
        """
        options = {**dict(self.unroll_options), **unroll_options}
        return unroll(self.cell, self.cell_params(), xs, lengths=lengths, initial_carry=initial_carry, **options)
