"""Cells by name, for flags: the built-in names, or ``module:attribute`` or ``file.py:attribute`` for your own."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from seqjax import initializers
from seqjax.cells.base import Cell
from seqjax.cells.gru import gru
from seqjax.cells.lru import lru
from seqjax.cells.lstm import lstm
from seqjax.cells.minimal import mingru, minlstm
from seqjax.cells.rglru import rglru
from seqjax.cells.rnn import rnn

BUILTIN_CELLS = ("rnn", "rnn_relu", "lstm", "lstm_peephole", "gru", "gru_cho")
# Recurrences linear in the carry (seqjax.cells.linear): ``unroll`` can run them with an associative scan.
LINEAR_CELLS = ("mingru", "mingru_signed", "minlstm", "lru", "lru_real", "lru_signed", "rglru")


def cell_by_name(
    name: str,
    recurrent_init: initializers.Initializer = initializers.orthogonal,
    forget_bias: float = 1.0,
) -> Cell:
    """Builds the cell called ``name``.

    Args:
      name: one of ``BUILTIN_CELLS`` or ``LINEAR_CELLS`` (``recurrent_init`` and ``forget_bias`` do not apply to
        the latter: they have no recurrent weights); or ``"module.path:attr"`` (the module importable: on
        ``sys.path``) or ``"path/to/file.py:attr"`` (the file loaded as a module of its own, relative to the working
        directory), where ``attr`` is a ``Cell`` (used as it is: the options below do not apply to it) or a function
        of no arguments returning one.
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
    if name == "mingru":
        return mingru()
    if name == "mingru_signed":
        return mingru(eigenvalues="signed")
    if name == "minlstm":
        return minlstm()
    if name in ("lru", "lru_real", "lru_signed"):
        return lru({"lru": "complex", "lru_real": "real", "lru_signed": "signed"}[name])
    if name == "rglru":
        return rglru()
    if ":" in name:
        return _import_cell(name)
    raise ValueError(
        f"unknown cell {name!r}; known: {', '.join(BUILTIN_CELLS + LINEAR_CELLS)}, or 'module:attribute' or "
        "'file.py:attribute' for your own"
    )


def _import_cell(spec: str) -> Cell:
    module_name, _, attr = spec.rpartition(":")
    try:
        module = _file_module(module_name) if module_name.endswith(".py") else importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        hint = ""
        if e.name and f"{module_name}.".startswith(f"{e.name}."):  # the module named, not one that it imports
            hint = " (put its directory on PYTHONPATH, or name its file: path/to/module.py:attribute)"
        raise ValueError(f"cannot import cell {spec!r}: {e}{hint}") from e
    except (ImportError, ValueError, TypeError, OSError) as e:  # ValueError/TypeError: empty module name
        raise ValueError(f"cannot import cell {spec!r}: {e}") from e
    if not hasattr(module, attr):
        raise ValueError(f"cannot import cell {spec!r}: {module_name} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if callable(obj) and not isinstance(obj, Cell):
        try:
            inspect.signature(obj).bind()
        except (TypeError, ValueError) as e:  # needs arguments, or has no inspectable signature
            raise ValueError(f"{spec!r} is neither a Cell nor a function of no arguments returning one: {e}") from e
        obj = obj()
    if not isinstance(obj, Cell):
        raise ValueError(f"{spec!r} is not a seqjax.cells.Cell (got {type(obj).__name__})")
    return obj


def _file_module(path: str):
    """The Python file ``path`` loaded as a module (once per file: its cells are the same objects every time)."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ImportError(f"no such file {file}")
    return _load(file)


@functools.cache
def _load(file: Path):
    name = f"seqjax_user_cells.{file.stem}_{abs(hash(str(file)))}"
    module_spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module
