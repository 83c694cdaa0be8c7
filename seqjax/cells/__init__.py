"""Recurrent cells as pure functions (see ``base`` for the protocol)."""

from seqjax.cells.base import Cell, hidden_size_of, step_input, zero_carry
from seqjax.cells.gru import gru
from seqjax.cells.lstm import LSTMCarry, lstm
from seqjax.cells.named import BUILTIN_CELLS, cell_by_name
from seqjax.cells.rnn import rnn

__all__ = [
    "BUILTIN_CELLS",
    "Cell",
    "LSTMCarry",
    "cell_by_name",
    "gru",
    "hidden_size_of",
    "lstm",
    "rnn",
    "step_input",
    "zero_carry",
]
