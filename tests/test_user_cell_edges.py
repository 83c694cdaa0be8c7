"""A user's cell written as plain functions, in the places that once tripped it: an ``init_params`` without a
``dtype`` inside ``layers.stacked``, a tuple carry without ``init_carry`` (one line, not JAX's scan error), and
bfloat16 weights (outputs in the weights' dtype, as a built-in cell gives them)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import Cell, deer, precision, rnn, unroll
from seqjax.cells.base import init_in_dtype, takes_dtype
from seqjax.layers import stacked


def init_mgu(key, input_size, hidden_size):  # a Minimal Gated Unit, as a new user writes it: no dtype argument
    k_x, k_h = jax.random.split(key)
    return {
        "w_x": jax.random.normal(k_x, (input_size, 2 * hidden_size)) / np.sqrt(input_size),
        "w_h": jax.random.normal(k_h, (hidden_size, 2 * hidden_size)) / np.sqrt(hidden_size),
    }


def mgu_step(params, h, x):
    f_x, n_x = jnp.split(x @ params["w_x"], 2, axis=-1)
    f_h, n_h = jnp.split(params["w_h"], 2, axis=-1)
    f = jax.nn.sigmoid(f_x + h @ f_h)
    n = jnp.tanh(n_x + (f * h) @ n_h)
    h = (1 - f) * h + f * n
    return h, h


def test_stacked_user_cells_without_a_dtype_argument_initialise_in_any_dtype():
    mgu = Cell(init_mgu, mgu_step, name="mgu")
    assert not takes_dtype(init_mgu) and takes_dtype(lambda key, d, h, dtype=jnp.float32: None)
    deep = stacked([mgu, mgu])
    params = deep.init_params(jax.random.key(0), 3, 5)  # passed dtype to init_mgu before: a TypeError
    want = init_mgu(jax.random.split(jax.random.key(0), 2)[0], 3, 5)
    np.testing.assert_array_equal(params[0]["w_x"], want["w_x"])  # float32: exactly what the function made
    half = deep.init_params(jax.random.key(0), 3, 5, jnp.bfloat16)
    assert {leaf.dtype for leaf in jax.tree.leaves(half)} == {jnp.dtype(jnp.bfloat16)}
    np.testing.assert_array_equal(half[0]["w_x"], want["w_x"].astype(jnp.bfloat16))
    outputs = unroll(deep, params, jnp.ones((2, 4, 3))).outputs
    assert outputs.shape == (2, 4, 5) and bool(jnp.all(jnp.isfinite(outputs)))
    assert init_in_dtype(init_mgu, jax.random.key(1), 3, 5)["w_h"].dtype == jnp.float32


def test_a_tuple_carry_without_init_carry_is_one_line_naming_the_fix():
    def step(params, carry, x):  # a carry of two arrays, (h, running sum), and no init_carry given
        h, total = carry
        h, _ = mgu_step(params, h, x)
        return (h, total + h), h

    cell = Cell(init_mgu, step, name="mgu_with_sum")
    params = init_mgu(jax.random.key(0), 3, 5)
    with pytest.raises(ValueError, match=r"^cell 'mgu_with_sum' has no init_carry") as refused:
        unroll(cell, params, jnp.ones((2, 4, 3)))
    assert "\n" not in str(refused.value) and "init_carry=lambda params, batch_shape" in str(refused.value)
    # A step that takes the one-array carry but returns two arrays: named as such.
    grows = Cell(init_mgu, lambda params, h, x: ((mgu_step(params, h, x)[0],) * 2, h), name="grows")
    with pytest.raises(ValueError, match=r"^cell 'grows' has no init_carry, .* returns a carry of 2 leaves"):
        unroll(grows, params, jnp.ones((2, 4, 3)))
    # With init_carry it runs; and a one-array carry without init_carry still needs none.
    zeros = lambda params, batch_shape: (jnp.zeros((*batch_shape, 5)), jnp.zeros((*batch_shape, 5)))
    done = unroll(Cell(init_mgu, step, zeros, name="ok"), params, jnp.ones((2, 4, 3)))
    np.testing.assert_allclose(done.carry[1], jnp.sum(done.outputs, axis=1), rtol=1e-6)
    assert unroll(Cell(init_mgu, mgu_step), params, jnp.ones((2, 4, 3))).outputs.shape == (2, 4, 5)


@jax.numpy_dtype_promotion("standard")  # the user's step mixes its float32 carry with bfloat16 weights, as JAX allows
def test_a_user_cell_with_bfloat16_weights_outputs_bfloat16_as_a_built_in_cell_does():
    xs = jnp.ones((2, 4, 3), jnp.bfloat16)
    mgu = Cell(init_mgu, mgu_step, name="mgu")
    params = precision.cast_floating(init_mgu(jax.random.key(0), 3, 5), jnp.bfloat16)
    built_in = rnn("tanh")
    rnn_params = built_in.init_params(jax.random.key(0), 3, 5, jnp.bfloat16)
    user, theirs = unroll(mgu, params, xs), unroll(built_in, rnn_params, xs)
    assert user.outputs.dtype == theirs.outputs.dtype == jnp.bfloat16
    assert user.carry.dtype == theirs.carry.dtype  # the carry keeps its own dtype in both
    grads = jax.grad(lambda p: jnp.sum(unroll(mgu, p, xs).outputs.astype(jnp.float32)))(params)
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.bfloat16)}
    float32 = init_mgu(jax.random.key(0), 3, 5)  # float32 weights: the outputs are left as the step made them
    assert unroll(mgu, float32, xs.astype(jnp.float32)).outputs.dtype == jnp.float32
    # Newton's method over the sequence (seqjax.deer) gives them in the weights' dtype, as the scan does, for both
    # (the built-in cell's products have custom VJPs, which its Jacobians once met in forward mode: a TypeError)
    for jacobian in ("full", "diagonal"):
        user_newton = deer.unroll(mgu, params, xs, jacobian=jacobian)
        built_in_newton = deer.unroll(built_in, rnn_params, xs, jacobian=jacobian)
        assert user_newton.outputs.dtype == built_in_newton.outputs.dtype == jnp.bfloat16
        assert bool(built_in_newton.converged)
        np.testing.assert_allclose(built_in_newton.outputs.astype(jnp.float32), theirs.outputs.astype(jnp.float32),
                                   atol=2e-2)  # fmt: skip
