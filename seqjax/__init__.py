"""seqjax: recurrent sequence models as pure JAX functions."""

from seqjax import cells, gradflow, initializers, layers, scan
from seqjax.cells import Cell, LSTMCarry, gru, lstm, rnn
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
    "lstm",
    "rnn",
    "scan",
    "truncated_unroll",
    "unroll",
]
