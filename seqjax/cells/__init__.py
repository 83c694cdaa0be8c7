"""Recurrent cells as pure functions (see ``base`` for the protocol)."""

from seqjax.cells.base import Cell, check_outputs_hidden_size, hidden_size_of, output_size_of, step_input, zero_carry
from seqjax.cells.gru import gru
from seqjax.cells.initial_state import learned_initial_state
from seqjax.cells.linear import Linear, linear_cell
from seqjax.cells.lru import lru
from seqjax.cells.lstm import LSTMCarry, lstm
from seqjax.cells.minimal import mingru, minlstm
from seqjax.cells.named import BUILTIN_CELLS, LINEAR_CELLS, cell_by_name
from seqjax.cells.rglru import rglru
from seqjax.cells.rnn import rnn

__all__ = [
    "BUILTIN_CELLS",
    "LINEAR_CELLS",
    "Cell",
    "LSTMCarry",
    "Linear",
    "cell_by_name",
    "check_outputs_hidden_size",
    "gru",
    "hidden_size_of",
    "learned_initial_state",
    "linear_cell",
    "lru",
    "lstm",
    "mingru",
    "minlstm",
    "output_size_of",
    "rglru",
    "rnn",
    "step_input",
    "zero_carry",
]
