"""The cell protocol: a recurrent cell is a bundle of pure functions.

Dimension legend used throughout seqjax: b batch, t time, d input, h hidden, g gates.

A cell is::

    params = cell.init_params(key, input_size, hidden_size)  # any pytree of arrays
    carry = cell.init_carry(params, batch_shape)             # zeros, no key
    carry, y = cell.step(params, carry, u_t)                 # pure; a lax.scan body once params are bound

``u_t`` is the cell's input at one step. A cell may also provide
``project(params, xs) -> us``, a map applied to every input position at once (typically the
input matrix product ``x @ W_ih + b`` for all gates). When ``project`` is present, ``step``
receives ``project(params, x_t)`` instead of ``x_t``; the unroller hoists ``project`` out of the
time loop, turning T small matrix products into one large one. ``step_input`` does the same for a
single step. A cell may also offer ``fused``, the whole sequence at once with a hand-written
backward pass; ``unroll`` takes it where it applies (see ``seqjax.scan.unroll``). A cell whose recurrence is
linear in its carry says so with ``linear`` (``seqjax.cells.linear``), and ``unroll`` can then run it in
parallel over time.

A user cell needs only ``init_params`` and ``step``: ``Cell(init_params, step)``. If its carry is
one array ``[*batch, h]``, the zero carry is derived from ``init_params`` (see ``zero_carry``).

Mixed precision (``seqjax.precision``) hands a cell bfloat16 params and a float32 carry. The built-in
cells multiply with ``precision.dot(h, w)`` (bfloat16 operands, float32 sums) and return the new carry
in float32 and ``y_t`` in the params' dtype; a user cell that writes ``h @ w`` still works, its product
promoted to float32.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from seqjax import precision

Params = Any
Carry = Any


@dataclasses.dataclass(frozen=True)
class Cell:
    """A recurrent cell as plain functions.

    Attributes:
      init_params: ``(key, input_size, hidden_size) -> params``.
      step: ``(params, carry, u_t) -> (carry, y_t)`` with ``u_t [*batch, d]`` (or the projected
        input when ``project`` is set) and ``y_t [*batch, h]``.
      init_carry: ``(params, batch_shape) -> carry`` of zeros. Optional for cells whose carry is a
        single array ``[*batch, h]``: the default is ``zero_carry``.
      project: optional ``(params, xs [..., d]) -> us [..., k]``, applied to all positions at once.
      name: a short name used in tables, legends and error messages.
      unroll: the ``jax.lax.scan`` unroll factor ``unroll`` uses for this cell unless told otherwise.
      fused: optional ``(params, xs [t, b, d], carry, valid [t, b] | None, remat, restart=None) -> (carry, ys)``:
        the same results as scanning ``step`` (after ``project``) over the time-major inputs in time
        order, steps where ``valid`` is False leaving the carry unchanged and outputting 0, steps where
        ``restart [t, b]`` is True reading ``carry`` (the initial one) instead of the previous carry;
        typically with a faster custom VJP. ``remat`` asks it to save less for the backward pass.
      linear: optional ``seqjax.cells.linear.Linear``: the recurrence is ``h_t = a_t * h_{t-1} + b_t`` with
        ``(a_t, b_t)`` from the input alone (``step`` must be that recurrence: build such a cell with
        ``linear_cell``), so ``unroll`` can evaluate it with an associative scan.
      output_size: the features of ``y_t`` where they are not ``hidden_size`` (the LSTM with a projection:
        ``proj_size``); ``None``: ``y_t [*batch, h]``. The stacks (``seqjax.layers``) size the next layer's input
        by it (``output_size_of``).
    """

    init_params: Callable[..., Params]
    step: Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]]
    init_carry: Callable[[Params, tuple[int, ...]], Carry] | None = None
    project: Callable[[Params, jax.Array], jax.Array] | None = None
    name: str = "cell"
    unroll: int = 1
    fused: Callable[..., tuple[Carry, jax.Array]] | None = None
    linear: Any = None
    output_size: int | None = None

    def __post_init__(self):
        if self.init_carry is None:
            init_params = self.init_params

            def default_init_carry(params, batch_shape):
                return zero_carry(init_params, params, batch_shape)

            default_init_carry.derived = True  # seqjax.scan checks that the step keeps this one-array carry
            object.__setattr__(self, "init_carry", default_init_carry)


def output_size_of(cell: Cell, hidden_size: int) -> int:
    """The features of ``cell``'s output ``y_t`` when it has ``hidden_size`` units: ``cell.output_size``, else
    ``hidden_size``."""
    return hidden_size if cell.output_size is None else cell.output_size


def takes_dtype(init_params: Callable[..., Params]) -> bool:
    """Whether ``init_params`` accepts a fourth argument, the parameters' dtype (by position or as ``dtype``)."""
    try:
        parameters = inspect.signature(init_params).parameters.values()
    except (TypeError, ValueError):  # no signature to read: assume the built-in cells' convention
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind == inspect.Parameter.VAR_POSITIONAL or p.name == "dtype" for p in parameters) or (
        sum(p.kind in positional for p in parameters) >= 4
    )


def init_in_dtype(init_params: Callable[..., Params], key, input_size: int, hidden_size: int, dtype=jnp.float32):
    """``init_params(key, input_size, hidden_size)`` with parameters in ``dtype``: the dtype is passed on to a
    function that takes one; a user's ``init_params`` without it gets its floating leaves cast (none for float32,
    which leaves its parameters as it made them)."""
    if takes_dtype(init_params):
        return init_params(key, input_size, hidden_size, dtype)
    params = init_params(key, input_size, hidden_size)
    return params if jnp.dtype(dtype) == jnp.float32 else precision.cast_floating(params, dtype)


def fused_projection(params: Params, xs: jax.Array) -> jax.Array:
    """``xs W_ih + b`` for every step at once, ``[..., d] -> [..., g h]`` in the parameters' dtype: the ``project``
    of the built-in cells (their fused gate weights ``w_ih [d, g h]`` and bias ``b [g h]``)."""
    z = xs.astype(params["w_ih"].dtype) @ params["w_ih"]
    return z + jnp.broadcast_to(params["b"], z.shape)  # explicit: strict rank promotion


def hidden_zeros(params: Params, batch_shape) -> jax.Array:
    """``h = 0``, ``[*batch_shape, h]`` (h from ``w_hh [h, g h]``) in the carry's dtype: at least float32."""
    w_hh = params["w_hh"]
    return jnp.zeros((*batch_shape, w_hh.shape[0]), precision.carry_dtype(w_hh.dtype))


def step_input(cell: Cell, params: Params, carry: Carry, x: jax.Array):
    """One step on a raw input ``x [*batch, d]``: projects it first when the cell has ``project``."""
    u = x if cell.project is None else cell.project(params, x)
    return cell.step(params, carry, u)


def hidden_size_of(init_params: Callable[..., Params], params: Params) -> int:
    """Recovers ``hidden_size`` from params by matching the shapes ``init_params`` would produce.

    Candidate sizes are the dimensions found in ``params`` (and their integer fractions, for fused
    gate blocks such as ``[h, 3h]``); each candidate pair ``(d, h)`` is checked with
    ``jax.eval_shape``, so nothing is computed. Raises ``ValueError`` if no pair or several
    different hidden sizes fit.
    """
    target = jax.tree.map(lambda a: tuple(jnp.shape(a)), params)
    dims = {dim for leaf in jax.tree.leaves(params) for dim in jnp.shape(leaf)}
    candidates = sorted({dim // k for dim in dims for k in (1, 2, 3, 4) if dim % k == 0 and dim // k})
    key = jax.random.key(0)
    found = set()
    for d, h in itertools.product(candidates, candidates):
        try:
            shapes = jax.eval_shape(lambda k, d=d, h=h: init_params(k, d, h), key)
        except Exception:  # a candidate that does not fit may fail in any way
            continue
        got = jax.tree.map(lambda a: tuple(a.shape), shapes)
        if got == target:
            found.add(h)
    if len(found) != 1:
        raise ValueError(
            "cannot infer the hidden size of this cell from its params "
            f"(matching sizes: {sorted(found)}); give the Cell an explicit init_carry"
        )
    return found.pop()


def zero_carry(init_params: Callable[..., Params], params: Params, batch_shape) -> jax.Array:
    """The zero carry ``[*batch_shape, h]`` of a single-array-carry cell, in the params' dtype but at
    least float32 (``seqjax.precision.carry_dtype``)."""
    hidden = hidden_size_of(init_params, params)
    dtype = precision.carry_dtype(jax.tree.leaves(params)[0].dtype)
    return jnp.zeros((*tuple(batch_shape), hidden), dtype)
