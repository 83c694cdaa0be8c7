"""A learned initial state (seqjax.cells.learned_initial_state) against a Python loop over the cell's step started
from that state: values, and dL/d(initial) = the sum over the batch of the loop's dL/dcarry_0."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import unroll
from seqjax.cells import Cell, LSTMCarry, gru, learned_initial_state, lstm, mingru, step_input

D, H, B, T = 3, 4, 2, 5
EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
RESETS = np.array([[False, False, True, False, False], [False, True, False, False, True]])


@pytest.fixture
def my_cells(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import my_cells

    return my_cells


def loop_outputs(cell, params, carry0, xs, resets=None):
    """``ys [b, t, h]``: ``step_input`` one step at a time from ``carry0 [b, ...]``; where ``resets[:, t]``, the carry
    entering step t is ``carry0`` again."""
    carry, ys = carry0, []
    for t in range(xs.shape[1]):
        if resets is not None:
            carry = jax.tree.map(lambda c, c0, t=t: jnp.where(resets[:, t, None], c0, c), carry, carry0)
        carry, y = step_input(cell, params, carry, xs[:, t])
        ys.append(y)
    return jnp.stack(ys, axis=1)


def cases(my_cells):
    return {  # (cell, unroll's options)
        "lstm_fused": (lstm(forget_bias=0.5), {"fused": True}),  # the carry's gradient through a custom VJP
        "gru_resets": (gru(), {"resets": RESETS}),
        "indrnn": (my_cells.indrnn, {}),  # a user's cell: two functions, its zero carry derived
        "mingru_g_parallel": (mingru(activation="g"), {"parallel": True}),  # a negative h_0 in the log-space scan
    }


@pytest.mark.parametrize("name", ["lstm_fused", "gru_resets", "indrnn", "mingru_g_parallel"])
def test_values_and_gradients_equal_a_loop_from_the_learned_state(key, my_cells, name):
    cell, options = cases(my_cells)[name]
    learned = learned_initial_state(cell)
    k_p, k_s, k_x, k_w = jax.random.split(key, 4)
    params = learned.init_params(k_p, D, H)
    leaves, treedef = jax.tree.flatten(params["initial"])
    keys = jax.random.split(k_s, len(leaves))
    initial = [-0.2 - 0.5 * jax.random.uniform(k, leaf.shape) for k, leaf in zip(keys, leaves, strict=True)]
    params = {**params, "initial": jax.tree.unflatten(treedef, initial)}  # negative, nonzero in every unit
    xs = jax.random.normal(k_x, (B, T, D))
    w = jax.random.normal(k_w, (B, T, H))
    resets = options.get("resets")

    def loss(p):
        return jnp.sum(w * unroll(learned, p, xs, **options).outputs)

    def loop_loss(inner, carry0):
        return jnp.sum(w * loop_outputs(cell, inner, carry0, xs, resets))

    carry0 = jax.tree.map(lambda s: jnp.broadcast_to(s, (B, *s.shape)), params["initial"])
    with jax.numpy_rank_promotion("allow" if name == "indrnn" else "raise"):  # indrnn's `u * h`: [h] with [b, h]
        (value, grads), (expected, (d_inner, d_carry0)) = jax.jit(
            lambda: (jax.value_and_grad(loss)(params), jax.value_and_grad(loop_loss, (0, 1))(params["cell"], carry0))
        )()
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    for g, g_ref in zip(jax.tree.leaves(grads["cell"]), jax.tree.leaves(d_inner), strict=True):
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-6)
    d_initial = jax.tree.map(lambda g: jnp.sum(g, axis=0), d_carry0)  # summed over the batch
    assert jax.tree.structure(grads["initial"]) == jax.tree.structure(d_initial)
    for g, g_ref in zip(jax.tree.leaves(grads["initial"]), jax.tree.leaves(d_initial), strict=True):
        assert np.abs(np.asarray(g_ref)).max() > 1e-3  # the state is read: a gradient to check
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-6)


def test_starts_as_the_plain_cell(key):
    """Same key: the inner params are the plain cell's, ``initial`` is zeros shaped as one example's carry, and the
    outputs are the plain cell's from its zero carry; bfloat16 params keep a float32 carry."""
    cell = lstm()
    learned = learned_initial_state(cell)
    params = learned.init_params(key, D, H)
    for a, b in zip(jax.tree.leaves(params["cell"]), jax.tree.leaves(cell.init_params(key, D, H)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert isinstance(params["initial"], LSTMCarry) and learned.name == "lstm_h0"
    for leaf in params["initial"]:
        assert leaf.shape == (H,) and leaf.dtype == jnp.float32
        np.testing.assert_array_equal(leaf, 0.0)
    xs = jax.random.normal(key, (B, T, D))
    ours, plain = jax.jit(
        lambda: (
            unroll(learned, params, xs, fused=False).outputs,
            unroll(cell, params["cell"], xs, fused=False).outputs,
        )
    )()
    np.testing.assert_array_equal(ours, plain)
    half = learned.init_params(key, D, H, jnp.bfloat16)
    carry = learned.init_carry(half, (B,))
    assert half["initial"].hidden.dtype == jnp.bfloat16 and carry.hidden.dtype == jnp.float32
    assert carry.hidden.shape == carry.cell.shape == (B, H)


def test_a_user_cell_without_init_carry_keeps_the_one_line_check(key):
    """A user's step with a tuple carry but no init_carry: the wrapped cell is refused as the cell itself would be."""

    def init(key, d, h):
        return {"w": jax.random.normal(key, (d, h)), "u": jnp.eye(h)}

    def step(params, carry, x):  # (h, running sum) without an init_carry
        h, total = carry
        h = jnp.tanh(x @ params["w"] + h @ params["u"])
        return (h, total + h), h

    learned = learned_initial_state(Cell(init, step, name="summing"))
    with pytest.raises(ValueError, match=r"^cell 'summing_h0' has no init_carry") as refused:
        unroll(learned, learned.init_params(key, D, H), jnp.ones((B, T, D)))
    assert "\n" not in str(refused.value)
