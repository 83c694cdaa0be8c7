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
one array ``[*batch, h]``, the zero carry is derived from ``init_params`` (see ``hidden_size_of``). A cell
may declare how its output reads its carry, ``readout(params, carry, u_t) -> y_t``; gradient probes read
``y_t`` from the probed carry with it, or without it from the step itself (``seqjax.probes``).

Mixed precision (``seqjax.precision``) hands a cell bfloat16 params and a float32 carry. The built-in
cells multiply with ``precision.dot(h, w)`` (bfloat16 operands, float32 sums) and return the new carry
in float32 and ``y_t`` in the params' dtype; a user cell that writes ``h @ w`` still works, its product
promoted to float32.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

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
      fused_faster: optional ``(params, xs [t, b, d], carry, valid, remat, restart) -> bool``: True where ``fused``
        is faster than the scanned step whatever the shape, so that ``unroll`` takes it by default there even where
        ``seqjax.scan.fused_by_default`` would not (the LSTM's, where its native loops run). Reads shapes and
        dtypes only: it may be given ``jax.ShapeDtypeStruct`` values.
      linear: optional ``seqjax.cells.linear.Linear``: the recurrence is ``h_t = a_t * h_{t-1} + b_t`` with
        ``(a_t, b_t)`` from the input alone (``step`` must be that recurrence: build such a cell with
        ``linear_cell``), so ``unroll`` can evaluate it with an associative scan.
      output_size: the features of ``y_t`` where they are not ``hidden_size`` (the LSTM with a projection:
        ``proj_size``); ``None``: ``y_t [*batch, h]``. The stacks (``seqjax.layers``) size the next layer's input
        by it (``output_size_of``).
      readout: optional ``(params, carry, u_t) -> y_t``, how the output reads the carry the step returns (the
        step's ``y_t`` must equal ``readout(params, carry_t, u_t)``). A gradient probe reads ``y_t`` from the
        probed carry with it (``seqjax.probes``), and a linear cell's associative scan reads every output with it.
        Without it, ``y_t`` is the carry leaf the step returns as ``y_t`` (``return h, h``), ``h_t`` for a
        linear cell, and a probe reads other outputs from the step's own computation.
    """

    init_params: Callable[..., Params]
    step: Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]]
    init_carry: Callable[[Params, tuple[int, ...]], Carry] | None = None
    project: Callable[[Params, jax.Array], jax.Array] | None = None
    name: str = "cell"
    unroll: int = 1
    fused: Callable[..., tuple[Carry, jax.Array]] | None = None
    fused_faster: Callable[..., bool] | None = None
    linear: Any = None
    output_size: int | None = None
    readout: Callable[[Params, Carry, jax.Array], jax.Array] | None = None

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


def check_outputs_hidden_size(cell: Cell, hidden_size: int, reader: str) -> None:
    """``ValueError`` (one line) unless ``cell`` outputs ``hidden_size`` features a step, as ``reader`` needs (a model
    that adds outputs to its state, or attends over them): an LSTM with ``proj_size`` does not."""
    if output_size_of(cell, hidden_size) != hidden_size:
        raise ValueError(
            f"{reader} needs hidden_size = {hidden_size} features a step; {cell.name} outputs {cell.output_size} "
            "(a projected LSTM works in the classifier, tagger, language model and the task model's plain stack)"
        )


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
    z = matmul_rows(xs.astype(params["w_ih"].dtype), params["w_ih"])
    return z + jnp.broadcast_to(params["b"], z.shape)  # explicit: strict rank promotion


def matmul_rows(x: jax.Array, w: jax.Array) -> jax.Array:
    """``x @ w`` for ``x [..., d]`` and ``w [d, k]``, as one ``[rows, d] x [d, k]`` product: the same values, and a
    gradient of two plain products (``dx = dz w^T``, ``dw = x^T dz`` over all rows). The gradient of the product on
    ``[t, b, d]`` contracts two axes at once, which XLA:CPU lays out with extra copies: 2.7 ms more per LSTM layer
    (fused sequence, training step at 32x64x256, 50.3 against 47.5 ms on a 2-core CPU)."""
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])


def hidden_zeros(params: Params, batch_shape) -> jax.Array:
    """``h = 0``, ``[*batch_shape, h]`` (h from ``w_hh [h, g h]``) in the carry's dtype: at least float32."""
    w_hh = params["w_hh"]
    return jnp.zeros((*batch_shape, w_hh.shape[0]), precision.carry_dtype(w_hh.dtype))


def step_input(cell: Cell, params: Params, carry: Carry, x: jax.Array):
    """One step on a raw input ``x [*batch, d]``: projects it first when the cell has ``project``."""
    u = x if cell.project is None else cell.project(params, x)
    return cell.step(params, carry, u)


# The (input_size, hidden_size) at which ``hidden_size_of`` reads how ``init_params`` sizes its parameters: each size
# changed alone, and input and hidden sizes distinct, so no dimension's growth is taken for the other's.
SIZE_PROBES = ((24, 16), (24, 32), (40, 16))


def hidden_size_of(init_params: Callable[..., Params], params: Params) -> int:
    """The ``hidden_size`` that ``init_params`` was given to make ``params``, read from their shapes without trial.

    ``init_params`` is evaluated (``jax.eval_shape``: nothing is computed) at the three ``SIZE_PROBES``, which gives
    every parameter dimension as ``c + a h + b d`` (``w_hh [h, 4h]``: ``(0, 1, 0)`` and ``(0, 4, 0)``; a weight on
    ``[x, h]``: ``d + h``). A dimension that grows with h alone gives h from the actual shape, one that grows with d
    alone gives d, and one more ``eval_shape`` at that ``(d, h)`` checks that it makes exactly these shapes. The
    probes are made once per ``init_params`` and the answer once per parameter shapes (both memoised), so tracing
    ``unroll`` again costs no call of ``init_params``. A cell with ``input_size == hidden_size`` is read as any other.

    Raises:
      ValueError: one line, when the shapes do not tell h (no dimension grows with h alone, shapes that are not
        ``c + a h + b d``, or sizes that ``init_params`` does not make).
    """
    leaves, treedef = jax.tree.flatten(params)
    shapes = tuple(tuple(jnp.shape(leaf)) for leaf in leaves)
    try:
        hash(init_params)
    except TypeError:  # an unhashable callable: read afresh every time
        return _hidden_size_of(init_params, treedef, shapes)
    return _cached_hidden_size_of(init_params, treedef, shapes)


class _SizeModel(NamedTuple):
    """How ``init_params`` sizes its parameters: their tree, each leaf's rank, and every dimension (flattened in
    leaf order) as ``(c, a, b)``, the dimension being ``c + a h + b d``."""

    treedef: Any
    ranks: tuple[int, ...]
    dims: tuple[tuple[int, int, int], ...]


def _shapes_at(init_params, input_size: int, hidden_size: int):
    made = jax.eval_shape(lambda key: init_params(key, input_size, hidden_size), jax.random.key(0))
    leaves, treedef = jax.tree.flatten(made)
    return treedef, tuple(tuple(leaf.shape) for leaf in leaves)


@functools.lru_cache(maxsize=256)
def _size_model(init_params: Callable[..., Params]) -> _SizeModel:
    (d0, h0), (_, h1), (d1, _) = SIZE_PROBES
    try:
        (tree, base), (tree_h, grown_h), (tree_d, grown_d) = (_shapes_at(init_params, d, h) for d, h in SIZE_PROBES)
    except Exception as e:  # an init function may fail at the probe sizes in any way
        raise _cannot_infer(init_params, f"it failed at input size {d0}, hidden size {h0}: {first_line(e)}") from None
    ranks = tuple(len(s) for s in base)
    if tree_h != tree or tree_d != tree or tuple(len(s) for s in grown_h) != ranks or tuple(map(len, grown_d)) != ranks:
        raise _cannot_infer(init_params, "its parameters' tree or ranks change with the sizes")
    dims = []
    for at_base, at_h, at_d in zip(_flat(base), _flat(grown_h), _flat(grown_d), strict=True):
        a, a_rest = divmod(at_h - at_base, h1 - h0)
        b, b_rest = divmod(at_d - at_base, d1 - d0)
        if a_rest or b_rest:
            raise _cannot_infer(init_params, "a parameter dimension is not of the form c + a h + b d")
        dims.append((at_base - a * h0 - b * d0, a, b))
    return _SizeModel(tree, ranks, tuple(dims))


def _hidden_size_of(init_params: Callable[..., Params], treedef, shapes: tuple[tuple[int, ...], ...]) -> int:
    model = _size_model(init_params)
    if treedef != model.treedef or tuple(len(s) for s in shapes) != model.ranks:
        raise _cannot_infer(init_params, f"its params are not a tree that it makes ({treedef})")
    pairs = list(zip(model.dims, _flat(shapes), strict=True))
    h = _size_solving([(dim - c, a) for (c, a, b), dim in pairs if a and not b], init_params, "hidden size")
    if h is None:
        raise _cannot_infer(init_params, "no parameter dimension grows with the hidden size alone")
    d = _size_solving([(dim - c - a * h, b) for (c, a, b), dim in pairs if b], init_params, "input size")
    d = SIZE_PROBES[0][0] if d is None else d  # no dimension reads d: any size makes the same shapes
    if _shapes_at(init_params, d, h) != (treedef, shapes):
        raise _cannot_infer(init_params, f"it does not make these shapes at input size {d}, hidden size {h}")
    return h


_cached_hidden_size_of = functools.lru_cache(maxsize=1024)(_hidden_size_of)


def _size_solving(equations: list[tuple[int, int]], init_params, what: str) -> int | None:
    """The one size ``n >= 1`` with ``rest = slope * n`` for every ``(rest, slope)``; None without equations."""
    if not equations:
        return None
    sizes = {rest // slope if rest % slope == 0 and rest // slope >= 1 else None for rest, slope in equations}
    if len(sizes) != 1 or None in sizes:
        raise _cannot_infer(init_params, f"its shapes fit no single {what}")
    return sizes.pop()


def _flat(shapes: tuple[tuple[int, ...], ...]) -> list[int]:
    return [dim for shape in shapes for dim in shape]


def first_line(e: Exception) -> str:
    """An exception's message in one line: its first (or the exception's type name)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _cannot_infer(init_params: Callable[..., Params], reason: str) -> ValueError:
    name = getattr(init_params, "__name__", type(init_params).__name__)
    return ValueError(
        f"cannot infer the hidden size of this cell from its params ({name}: {reason}); "
        "give the Cell an explicit init_carry"
    )


def zero_carry(init_params: Callable[..., Params], params: Params, batch_shape) -> jax.Array:
    """The zero carry ``[*batch_shape, h]`` of a single-array-carry cell, in the params' dtype but at
    least float32 (``seqjax.precision.carry_dtype``)."""
    hidden = hidden_size_of(init_params, params)
    dtype = precision.carry_dtype(jax.tree.leaves(params)[0].dtype)
    return jnp.zeros((*tuple(batch_shape), hidden), dtype)
