"""The zero carry of a cell without ``init_carry``: its hidden size read from the parameter shapes without trial.

References: the hidden size each cell was made with, and counts of the calls of its ``init_params``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import my_cells
from test_user_cell_edges import init_mgu, mgu_step

from seqjax import Cell, unroll
from seqjax.cells import hidden_size_of


def counting(init_params):
    """``init_params`` and a list that grows by one at each of its calls (traced or not)."""
    calls = []

    def counted(key, input_size, hidden_size):
        calls.append((input_size, hidden_size))
        return init_params(key, input_size, hidden_size)

    return counted, calls


@pytest.mark.parametrize("init_params", [init_mgu, my_cells.indrnn_init], ids=["mgu", "indrnn"])
def test_zero_carry_has_the_hidden_size_the_params_were_made_with(key, init_params):
    """MGU (w_x [d, 2h], w_h [h, 2h]) and IndRNN (w [d, h], u [h], b [h]); d == h is no harder than d != h."""
    cell = Cell(init_params, mgu_step)
    for d, h in ((3, 5), (4, 4), (6, 2), (1, 1)):
        params = jax.eval_shape(lambda key, d=d, h=h: init_params(key, d, h), key)  # shapes: nothing to compute
        assert hidden_size_of(init_params, params) == h
        carry = jax.eval_shape(lambda p: cell.init_carry(p, (2, 3)), params)
        assert (carry.shape, carry.dtype) == ((2, 3, h), jnp.float32)
    np.testing.assert_array_equal(cell.init_carry(init_params(key, 3, 5), (2,)), np.zeros((2, 5), np.float32))


def test_the_hidden_size_is_read_without_trial_and_once_per_shapes(key):
    """The old inference tried every pair of candidate sizes (16 calls of init_params for this MGU, at every
    trace); now at most 4 calls the first time (three probe sizes, one check), and none for a second trace."""
    counted, calls = counting(init_mgu)
    cell = Cell(counted, mgu_step, name="mgu")
    params, xs = init_mgu(key, 3, 5), jnp.ones((2, 4, 3))
    assert cell.init_carry(params, (2,)).shape == (2, 5)
    assert len(calls) <= 4
    calls.clear()
    traced = jax.jit(lambda p, x: unroll(cell, p, x).outputs).lower(params, xs)  # a trace of its own
    assert calls == [] and traced.out_info.shape == (2, 4, 5)
    assert cell.init_carry(init_mgu(key, 4, 4), ()).shape == (4,)  # new shapes: one check, no new probes
    assert calls == [(4, 4)]


def test_a_constant_offset_is_read_and_shapes_that_do_not_tell_h_are_one_line(key):
    """w [d, h + 1] is c + a h + b d with c = 1: read. Refused in one line naming the fix: w [h * h], which the
    probes read as 48 h - 512 (no h makes it 9); w [d * h], which grows with h only together with d; and an init
    that fails at the probe sizes."""

    def offset(key, input_size, hidden_size):
        return {"w": jnp.zeros((input_size, hidden_size + 1))}

    assert hidden_size_of(offset, offset(key, 2, 4)) == 4
    refusals = {
        "square": (lambda key, d, h: {"w": jnp.zeros((h * h,))}, "its shapes fit no single hidden size"),
        "product": (lambda key, d, h: {"w": jnp.zeros((d * h,))}, "no parameter dimension grows with the hidden"),
        "fails": (lambda key, d, h: {"w": jnp.zeros((d, h))} if h < 8 else 1 / 0, "it failed at input size 24"),
    }
    for name, (init_params, reason) in refusals.items():
        with pytest.raises(ValueError, match=rf"^cannot infer the hidden size .*{reason}.*explicit init_carry$") as e:
            Cell(init_params, mgu_step).init_carry(init_params(key, 2, 3), (2,))
        assert "\n" not in str(e.value), name
