"""unroll(resets=): segments packed into one row run as if alone, in values and gradients, forward and in reverse,
on the per-step scan (every built-in kind of cell) and the associative scan (linear cells)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax.cells import gru, lstm, mingru, minlstm, rnn
from seqjax.scan import unroll

T, D, H = 7, 2, 3
STARTS = ((0, 3), (0, 4))  # row 0: segments [0, 3) and [3, 7); row 1: [0, 4) and [4, 7)

CELLS = {
    "rnn": (rnn(), False),
    "lstm": (lstm(), False),
    "gru": (gru(), False),
    "minlstm associative": (minlstm(), True),
    "mingru_g associative": (mingru("g"), True),  # a cell with a log-space form: resets run on the plain one
}


def _resets() -> jnp.ndarray:
    resets = np.zeros((len(STARTS), T), bool)
    for row, starts in enumerate(STARTS):
        resets[row, list(starts)] = True
    return jnp.asarray(resets)


def _setup(cell):
    params = cell.init_params(jax.random.key(0), D, H)
    params = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(jax.random.key(1), a.shape), params)
    return params, jax.random.normal(jax.random.key(2), (len(STARTS), T, D))


def _segments_alone(cell, params, xs, reverse, parallel):
    """Each row's segments, each run alone from the zero carry: outputs [b, t, h] and each row's final carry."""
    rows, finals = [], []
    for row, starts in enumerate(STARTS):
        bounds = [*starts, T]
        pieces = [
            unroll(cell, params, xs[row : row + 1, a:b], reverse=reverse, parallel=parallel)
            for a, b in itertools.pairwise(bounds)
        ]
        rows.append(jnp.concatenate([p.outputs for p in pieces], axis=1))
        finals.append((pieces[0] if reverse else pieces[-1]).carry)  # the carry after the last step read
    return jnp.concatenate(rows, axis=0), jax.tree.map(lambda *c: jnp.concatenate(c, axis=0), *finals)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_packed_segments_equal_segments_run_alone(name, reverse):
    cell, parallel = CELLS[name]
    params, xs = _setup(cell)

    def packed(params):
        result = unroll(cell, params, xs, resets=_resets(), reverse=reverse, parallel=parallel, fused=False)
        return jnp.sum(jnp.sin(result.outputs)), result

    def alone(params):
        outputs, carry = _segments_alone(cell, params, xs, reverse, parallel)
        return jnp.sum(jnp.sin(outputs)), (outputs, carry)

    (_, result), grads = jax.jit(jax.value_and_grad(packed, has_aux=True))(params)
    (_, (outputs, carry)), grads_alone = jax.jit(jax.value_and_grad(alone, has_aux=True))(params)
    np.testing.assert_allclose(np.asarray(result.outputs), np.asarray(outputs), rtol=1e-5, atol=1e-6)
    for got, want in zip(jax.tree.leaves((result.carry, grads)), jax.tree.leaves((carry, grads_alone)), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


def test_a_fused_cell_scans_when_given_resets_and_fused_true_is_refused():
    cell = lstm()
    params, xs = _setup(cell)
    scanned = unroll(cell, params, xs, resets=_resets(), fused=False).outputs
    np.testing.assert_array_equal(np.asarray(unroll(cell, params, xs, resets=_resets()).outputs), np.asarray(scanned))
    with pytest.raises(ValueError, match="resets need the per-step scan"):
        unroll(cell, params, xs, resets=_resets(), fused=True)
    with pytest.raises(ValueError, match=r"resets must be \[batch, time\]"):
        unroll(cell, params, xs, resets=_resets()[:, :3])
