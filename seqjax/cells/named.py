"""Cells by name, for flags: the built-in names, or ``package.module:attribute`` for a user's cell."""

from __future__ import annotations

import importlib
import inspect

from seqjax import initializers
from seqjax.cells.base import Cell
from seqjax.cells.gru import gru
from seqjax.cells.lstm import lstm
from seqjax.cells.rnn import rnn

BUILTIN_CELLS = ("rnn", "rnn_relu", "lstm", "lstm_peephole", "gru", "gru_cho")


def cell_by_name(
    name: str,
    recurrent_init: initializers.Initializer = initializers.orthogonal,
    forget_bias: float = 1.0,
) -> Cell:
    """Builds the cell called ``name``.

    Args:
      name: one of ``BUILTIN_CELLS``, or ``"module.path:attr"`` where ``attr`` is a ``Cell`` (used
        as it is: the options below do not apply to it) or a function of no arguments returning one.
      recurrent_init: initialiser of the recurrent weights of built-in cells.
      forget_bias: initial forget-gate bias of built-in LSTMs.
    """
    if name == "rnn":
        return rnn("tanh", recurrent_init)
    if name == "rnn_relu":
        return rnn("relu", recurrent_init)
    if name in ("lstm", "lstm_peephole"):
        return lstm(forget_bias, peephole=name == "lstm_peephole", recurrent_init=recurrent_init)
    if name in ("gru", "gru_cho"):
        return gru(reset_after=name == "gru", recurrent_init=recurrent_init)
    if ":" in name:
        return _import_cell(name)
    raise ValueError(
        f"unknown cell {name!r}; known: {', '.join(BUILTIN_CELLS)}, or 'module.path:attribute' for your own"
    )


def _import_cell(spec: str) -> Cell:
    module_name, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError, TypeError) as e:  # ValueError/TypeError: empty or relative module
        raise ValueError(f"cannot import cell {spec!r}: {e}") from e
    if callable(obj) and not isinstance(obj, Cell):
        try:
            inspect.signature(obj).bind()
        except (TypeError, ValueError) as e:  # needs arguments, or has no inspectable signature
            raise ValueError(f"{spec!r} is neither a Cell nor a function of no arguments returning one: {e}") from e
        obj = obj()
    if not isinstance(obj, Cell):
        raise ValueError(f"{spec!r} is not a seqjax.cells.Cell (got {type(obj).__name__})")
    return obj
