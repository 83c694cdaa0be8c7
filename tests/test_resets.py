"""unroll(resets=): segments packed into one row run as if alone (each on the plain per-step scan), in values and
gradients (of the parameters and of the initial carry every segment starts from), forward and in reverse, on the
per-step scan (lstm, gru), the fused sequences (lstm, gru; rnn with reset_to="zeros") and the associative scan
(linear cells)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax.cells import gru, lru, lstm, mingru, minlstm, rnn
from seqjax.scan import unroll

T, D, H = 7, 2, 3
STARTS = ((0, 3), (0, 4))  # row 0: segments [0, 3) and [3, 7); row 1: [0, 4) and [4, 7)

PATHS = {"scan": {"fused": False, "parallel": False}, "fused": {"fused": True}, "associative": {"parallel": True}}
# The per-step scan and the fused sequences' restart logic are written once for every cell: one cell with a tuple
# carry (the LSTM) and one with an array (the GRU, the RNN's fused arithmetic in the zeros test below) cover them.
CELLS = {
    "lstm": (lstm(), "scan"),
    "gru": (gru(), "scan"),
    "lstm fused": (lstm(), "fused"),
    "gru fused": (gru(), "fused"),
    "minlstm associative": (minlstm(), "associative"),
    "mingru_g associative": (mingru("g"), "associative"),  # a cell with a log-space form: resets run on the plain one
    "lru associative": (lru(), "associative"),
}


def _resets() -> jnp.ndarray:
    resets = np.zeros((len(STARTS), T), bool)
    for row, starts in enumerate(STARTS):
        resets[row, list(starts)] = True
    return jnp.asarray(resets)


def _setup(cell):
    params = cell.init_params(jax.random.key(0), D, H)
    params = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(jax.random.key(1), a.shape, a.dtype), params)
    carry0 = cell.init_carry(params, (len(STARTS),))
    carry0 = jax.tree.map(lambda c: c + 0.5 * jax.random.normal(jax.random.key(3), c.shape, c.dtype), carry0)
    return params, jax.random.normal(jax.random.key(2), (len(STARTS), T, D)), carry0


def _segments_alone(cell, params, xs, carry0, reverse):
    """Each row's segments, each run alone on the per-step scan from the row's initial carry: outputs [b, t, h] and
    each row's final carry."""
    rows, finals = [], []
    for row, starts in enumerate(STARTS):
        bounds = [*starts, T]
        initial = jax.tree.map(lambda c, row=row: c[row : row + 1], carry0)
        pieces = [
            unroll(cell, params, xs[row : row + 1, a:b], initial_carry=initial, reverse=reverse, **PATHS["scan"])
            for a, b in itertools.pairwise(bounds)
        ]
        rows.append(jnp.concatenate([p.outputs for p in pieces], axis=1))
        finals.append((pieces[0] if reverse else pieces[-1]).carry)  # the carry after the last step read
    return jnp.concatenate(rows, axis=0), jax.tree.map(lambda *c: jnp.concatenate(c, axis=0), *finals)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_packed_segments_equal_segments_run_alone(name, reverse):
    cell, path = CELLS[name]
    params, xs, carry0 = _setup(cell)

    def packed(params, carry0):
        result = unroll(cell, params, xs, initial_carry=carry0, resets=_resets(), reverse=reverse, **PATHS[path])
        return jnp.sum(jnp.sin(result.outputs)) + jnp.sum(jnp.abs(result.carry[0]) ** 2), result

    def alone(params, carry0):
        outputs, carry = _segments_alone(cell, params, xs, carry0, reverse)
        return jnp.sum(jnp.sin(outputs)) + jnp.sum(jnp.abs(carry[0]) ** 2), (outputs, carry)

    (_, result), grads = jax.jit(jax.value_and_grad(packed, (0, 1), has_aux=True))(params, carry0)
    (_, (outputs, carry)), grads_alone = jax.jit(jax.value_and_grad(alone, (0, 1), has_aux=True))(params, carry0)
    np.testing.assert_allclose(np.asarray(result.outputs), np.asarray(outputs), rtol=1e-5, atol=1e-6)
    for got, want in zip(jax.tree.leaves((result.carry, grads)), jax.tree.leaves((carry, grads_alone)), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["rnn fused", "lstm fused", "lru associative"])
def test_reset_to_zeros_starts_later_segments_from_zeros_and_the_first_from_the_initial_carry(name):
    """A language model's window: the state carried in reaches the first segment; the documents after it start
    from zeros, in values and in the gradient w.r.t. the carried-in state."""
    cell, path = (rnn(), "fused") if name == "rnn fused" else CELLS[name]
    params, xs, carry0 = _setup(cell)
    zeros = cell.init_carry(params, (1,))

    def packed(carry0):
        resets = _resets().at[:, 0].set(False)  # the window's first segment continues the carried-in state
        result = unroll(cell, params, xs, initial_carry=carry0, resets=resets, reset_to="zeros", **PATHS[path])
        return jnp.sum(jnp.sin(result.outputs)), result.outputs

    def alone(carry0):
        rows = []
        for row, starts in enumerate(STARTS):
            bounds = [*starts, T]
            pieces = []
            for a, b in itertools.pairwise(bounds):
                initial = jax.tree.map(lambda c, row=row: c[row : row + 1], carry0) if a == 0 else zeros
                pieces.append(unroll(cell, params, xs[row : row + 1, a:b], initial_carry=initial, **PATHS["scan"]))
            rows.append(jnp.concatenate([p.outputs for p in pieces], axis=1))
        outputs = jnp.concatenate(rows, axis=0)
        return jnp.sum(jnp.sin(outputs)), outputs

    (_, got), grad = jax.jit(jax.value_and_grad(packed, has_aux=True))(carry0)
    (_, want), grad_alone = jax.jit(jax.value_and_grad(alone, has_aux=True))(carry0)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    for g, w in zip(jax.tree.leaves(grad), jax.tree.leaves(grad_alone), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-5)


def test_resets_of_the_wrong_shape_are_refused():
    cell = lstm()
    params, xs, _ = _setup(cell)
    with pytest.raises(ValueError, match=r"resets must be \[batch, time\]"):
        unroll(cell, params, xs, resets=_resets()[:, :3])
    with pytest.raises(ValueError, match="reset_to must be one of initial, zeros"):
        unroll(cell, params, xs, resets=_resets(), reset_to="ones")
