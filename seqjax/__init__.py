"""seqjax: recurrent sequence models as pure JAX functions."""

from seqjax import cells, gradflow, initializers, layers, scan
from seqjax.cells import Cell, LSTMCarry, gru, linear_cell, lru, lstm, mingru, minlstm, rglru, rnn
from seqjax.scan import Unrolled, truncated_unroll, unroll

__all__ = [
    "Cell",
    "LSTMCarry",
    "Unrolled",
    "cells",
    "gradflow",
    "gru",
    "initializers",
    "layers",
    "linear_cell",
    "lru",
    "lstm",
    "mingru",
    "minlstm",
    "rglru",
    "rnn",
    "scan",
    "truncated_unroll",
    "unroll",
]
