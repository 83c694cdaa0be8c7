"""seqjax.deer: DEER and quasi-DEER against the sequential scan (an independent reference) in values and gradients
(w.r.t. params, inputs and the initial carry), with lengths, reverse reading, resets and time-major layouts, for
built-in cells and a user cell of plain functions; convergence reported, never a silent wrong answer."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import deer
from seqjax.cells import Cell, gru, lstm, rnn
from seqjax.scan import unroll

B, T, D, H = 3, 8, 2, 4
LENGTHS = jnp.array([8, 5, 1])
MODES = ("full", "diagonal")


def coupled_init(key, input_size, hidden_size, dtype=jnp.float32):
    k_w, k_u = jax.random.split(key)
    return {
        "w": jax.random.normal(k_w, (input_size, hidden_size), dtype) / np.sqrt(input_size).astype(dtype),
        "u": 0.9 * jax.random.normal(k_u, (hidden_size, hidden_size), dtype) / np.sqrt(hidden_size).astype(dtype),
    }


def coupled_step(params, h, x):
    """A user's cell, two plain functions: ``h_t = tanh(x_t W + h_{t-1} U)`` with a dense ``U``."""
    h = jnp.tanh(x @ params["w"] + h @ params["u"])
    return h, h


CELLS = {"rnn": rnn(), "lstm": lstm(), "gru": gru(), "user": Cell(coupled_init, coupled_step, name="coupled")}


def _setup(cell, scale=0.3, steps=T):
    params = cell.init_params(jax.random.key(0), D, H)
    params = jax.tree.map(lambda a: a + scale * jax.random.normal(jax.random.key(1), a.shape), params)
    xs = jax.random.normal(jax.random.key(2), (B, steps, D))
    carry0 = jax.tree.map(lambda c: 0.5 * jax.random.normal(jax.random.key(3), c.shape), cell.init_carry(params, (B,)))
    return params, xs, carry0


def _loss(result):
    """Reads the outputs and every leaf of the final carry, so both cotangents reach the recurrence."""
    return jnp.sum(jnp.sin(result.outputs)) + sum(jnp.sum(jnp.cos(leaf)) for leaf in jax.tree.leaves(result.carry))


def _value_and_grads(run, params, xs, carry0):
    """``(result, d loss / d (params, xs, carry0))``, compiled once."""

    def loss(params, xs, carry0):
        result = run(params, xs, carry0)
        return _loss(result), result

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(params, xs, carry0)[::-1]


def _assert_close(got, want, rtol=2e-4, atol=2e-5):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", CELLS)
def test_deer_and_quasi_deer_equal_the_scan_in_values_and_gradients(name):
    cell = CELLS[name]
    params, xs, carry0 = _setup(cell)
    reverse = name in ("lstm", "user")  # two cells read in reverse, two forward
    options = {"lengths": LENGTHS, "reverse": reverse}

    def run_scan(params, xs, carry0):
        return unroll(cell, params, xs, initial_carry=carry0, **options, fused=False, parallel=False)

    want, want_grads = _value_and_grads(run_scan, params, xs, carry0)
    for mode in MODES:

        def run_deer(params, xs, carry0, mode=mode):
            return deer.unroll(cell, params, xs, initial_carry=carry0, **options, jacobian=mode)

        got, got_grads = _value_and_grads(run_deer, params, xs, carry0)
        assert bool(got.converged) and 1 <= int(got.iterations) <= T and float(got.residual) <= got.tol, mode
        _assert_close((got.outputs, got.carry), (want.outputs, want.carry))
        _assert_close(got_grads, want_grads)


def test_time_major_return_carries_and_resets_match_the_scan_both_ways():
    cell = CELLS["lstm"]
    params, xs, carry0 = _setup(cell)
    resets = jnp.zeros((B, T), bool).at[0, 3].set(True).at[1, 4].set(True)
    xs_t, resets_t = jnp.swapaxes(xs, 0, 1), jnp.swapaxes(resets, 0, 1)
    options = {"initial_carry": carry0, "lengths": LENGTHS, "return_carries": True, "time_major": True}

    @jax.jit
    def both(params, xs_t):
        return [
            (
                deer.unroll(cell, params, xs_t, resets=resets_t, reverse=reverse, jacobian="full", **options),
                unroll(cell, params, xs_t, resets=resets_t, reverse=reverse, fused=False, **options),
            )
            for reverse in (False, True)
        ]

    for got, want in both(params, xs_t):
        assert bool(got.converged)
        _assert_close((got.outputs, got.carry, got.carries), (want.outputs, want.carry, want.carries))


@functools.cache
def _both_modes():
    """The user's coupled cell by DEER and quasi-DEER over ``2 T`` steps, with no options."""
    cell = CELLS["user"]
    params, xs, _ = _setup(cell, steps=2 * T)
    return jax.jit(lambda params, xs: [deer.unroll(cell, params, xs, jacobian=mode) for mode in MODES])(params, xs)


def test_quasi_deer_needs_at_least_as_many_iterations_on_a_coupled_cell():
    full, diagonal = _both_modes()
    assert bool(full.converged) and bool(diagonal.converged)
    assert 1 <= int(full.iterations) <= int(diagonal.iterations) <= 2 * T, (full.iterations, diagonal.iterations)


@functools.cache
def _unconverged():
    """An LSTM with large weights cut at two iterations, NaN-filled and kept, with its NaN gradient."""
    cell = CELLS["lstm"]
    params, xs, _ = _setup(cell, scale=3.0)

    def run(params, on_failure):
        return deer.unroll(cell, params, xs, jacobian="full", max_iterations=2, on_failure=on_failure)

    @jax.jit
    def results(params):
        grads = jax.grad(lambda p: _loss(run(p, "keep")))(params)
        return run(params, "nan"), run(params, "keep"), grads

    return results(params)


def test_a_run_that_does_not_converge_says_so_and_is_nan_by_default():
    nan, kept, grads = _unconverged()
    assert not bool(nan.converged) and int(nan.iterations) == 2 and float(nan.residual) > nan.tol
    assert np.isnan(np.asarray(nan.outputs)).all() and all(np.isnan(np.asarray(c)).all() for c in nan.carry)
    assert np.isfinite(np.asarray(kept.outputs)).all() and not bool(kept.converged)
    assert all(np.isnan(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_check_raises_one_line_and_passes_a_converged_result():
    nan, _, _ = _unconverged()
    with pytest.raises(deer.DeerNotConverged, match=r"^DEER did not converge in 2 iterations \(residual") as info:
        deer.check(nan)
    assert "\n" not in str(info.value) and "raise max_iterations or use seqjax.scan.unroll" in str(info.value)
    assert isinstance(info.value, ValueError)
    result = _both_modes()[0]
    assert deer.check(result) is result


def test_a_non_finite_iterate_is_not_converged():
    cell = CELLS["user"]
    params, xs, _ = _setup(cell)
    guess = jnp.full((B, T, H), jnp.inf)
    result = jax.jit(lambda params, xs: deer.unroll(cell, params, xs, initial_guess=guess))(params, xs)
    assert not bool(result.converged) and float(result.residual) == np.inf and int(result.iterations) == 0
    assert np.isnan(np.asarray(result.outputs)).all()


def test_the_default_jacobian_follows_the_carry_size():
    assert deer.jacobian_by_default(deer.DIAGONAL_ABOVE) == "full"
    assert deer.jacobian_by_default(deer.DIAGONAL_ABOVE + 1) == "diagonal"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"jacobian": "dense"}, "jacobian must be one of full, diagonal or None"),
        ({"on_failure": "raise"}, "on_failure must be one of nan, keep"),
        ({"max_iterations": 0}, "max_iterations must be >= 1"),
    ],
)
def test_bad_options_are_refused_in_one_line(options, message):
    cell = CELLS["rnn"]
    params, xs, _ = _setup(cell)
    with pytest.raises(ValueError, match=message):
        deer.unroll(cell, params, xs, **options)
    with pytest.raises(ValueError, match="expects xs of rank 3"):
        deer.unroll(cell, params, xs[0])
