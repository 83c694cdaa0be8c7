"""Gradient-flow probes against independent references: perturbed Python loops, finite differences, closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import (
    CELL_NAMES,
    CELLS,
    B,
    D,
    H,
    T,
    assert_tree_close,
    cell_context,
    first_leaf,
    loop,
    loop_carry_gradients,
    make_params,
    normal,
    stack_time,
    zero_eps,
)

from seqjax import LSTMCarry, gradflow, initializers, rnn
from seqjax.cells import step_input

LENGTHS = (4, T, 1)


def last_output_loss(v):
    return lambda outputs: jnp.sum(outputs[:, -1] * v)


def all_outputs_loss(w, v, lengths):
    """sum(outputs * w) plus each example's output at its true last step (L - 1) weighted by v."""
    last = jnp.array(lengths)[:, None, None] - 1

    def loss(outputs):
        return jnp.sum(outputs * w) + jnp.sum(jnp.take_along_axis(outputs, last, axis=1)[:, 0] * v)

    return loss


@pytest.mark.parametrize("name", CELL_NAMES)
def test_carry_gradients_vs_perturbed_loop(name):
    """carry_gradients vs jax.grad w.r.t. eps_t of a perturbed loop: loss on the last output; all outputs, lengths."""
    cell, params, xs = CELLS[name], make_params(CELLS[name], seed=60), normal(8, (B, T, D))
    v, w = normal(9, (B, H)), normal(10, (B, T, H))
    loss_last, loss_all = last_output_loss(v), all_outputs_loss(w, v, LENGTHS)

    @jax.jit
    def probes(params, xs):
        last = gradflow.carry_gradients(lambda r: loss_last(r.outputs), cell, params, xs)
        masked = gradflow.carry_gradients(lambda r: loss_all(r.outputs), cell, params, xs, lengths=jnp.array(LENGTHS))
        return last, masked

    with cell_context(name):
        (value_last, grads_last), (_, grads_all) = probes(params, xs)
        ref_last = loop_carry_gradients(cell, params, xs, loss_last)
        ref_all = loop_carry_gradients(cell, params, xs, loss_all, lengths=LENGTHS)
        _, outputs, _ = loop(cell, params, xs)
    np.testing.assert_allclose(value_last, loss_last(outputs), rtol=1e-5)
    assert_tree_close(grads_last, ref_last)
    assert_tree_close(grads_all, ref_all)
    # the last step's own gradient is the loss weight itself: y_T is h_T
    np.testing.assert_allclose(first_leaf(grads_last)[:, -1], v, rtol=1e-6)
    for i, length in enumerate(LENGTHS):  # padding: nothing flows into a carry that no valid output reads
        for leaf in jax.tree.leaves(grads_all):
            np.testing.assert_array_equal(leaf[i, length:], 0.0)


@pytest.mark.parametrize("name", ["lstm_peephole", "gru"])
def test_carry_gradients_vs_finite_differences(name):
    """float64: carry_gradients vs central differences of the loop's loss in eps at a few (example, t, unit)."""
    positions = [(0, 0, 0), (1, 3, 2), (2, T - 1, 1)]
    with jax.enable_x64(True):
        cell = CELLS[name]
        params, xs = make_params(cell, seed=70, dtype=jnp.float64), normal(11, (B, T, D), jnp.float64)
        w = normal(12, (B, T, H), jnp.float64)

        def loss_of_outputs(outputs):
            return jnp.sum(outputs * w)

        _, grads = jax.jit(lambda p, x: gradflow.carry_gradients(lambda r: loss_of_outputs(r.outputs), cell, p, x))(
            params, xs
        )
        eps0 = zero_eps(cell.init_carry(params, (B,)), T)
        delta = 1e-6
        for leaf_index, grad_leaf in enumerate(jax.tree.leaves(grads)):  # LSTM: the hidden and the cell leaf
            assert grad_leaf.dtype == jnp.float64
            for i, t, unit in positions:

                def loss_at(shift, i=i, t=t, unit=unit, leaf_index=leaf_index):
                    leaves, treedef = jax.tree.flatten(eps0[t])
                    leaves[leaf_index] = leaves[leaf_index].at[i, unit].set(shift)
                    eps = [*eps0[:t], jax.tree.unflatten(treedef, leaves), *eps0[t + 1 :]]
                    return float(loss_of_outputs(loop(cell, params, xs, eps=eps)[1]))

                fd = (loss_at(delta) - loss_at(-delta)) / (2 * delta)
                np.testing.assert_allclose(float(grad_leaf[i, t, unit]), fd, rtol=1e-6, atol=1e-9)


T_LONG = 12


@pytest.fixture(scope="module")
def linear_probe():
    """carry_gradients of sum(h_T * v) for the identity-activation RNN, compiled once for every W_hh."""
    cell = rnn("identity")
    return jax.jit(lambda p, x, v: gradflow.carry_gradients(lambda r: jnp.sum(r.outputs[:, -1] * v), cell, p, x))


@pytest.mark.parametrize("a", [3.0, 0.2])
def test_linear_rnn_closed_form(linear_probe, a):
    """h_t = x_t W + b + a h_{t-1}, L = sum(h_T * v): dL/dh_t = a^(T-t) v, so ||dL/dh_t|| = a^(T-t) ||v|| exactly."""
    cell = rnn("identity", recurrent_init=initializers.recurrent_init("identity", scale=a))
    params = cell.init_params(jax.random.key(0), D, H)
    np.testing.assert_array_equal(params["w_hh"], a * np.eye(H, dtype=np.float32))
    xs, v = normal(13, (B, T_LONG, D)), normal(14, (B, H))
    _, grads = linear_probe(params, xs, v)

    powers = a ** np.arange(T_LONG - 1, -1, -1.0)  # a^(T-t) for t = 1..T, i.e. stored positions 0..T-1
    v_norms = np.linalg.norm(np.asarray(v), axis=-1)
    np.testing.assert_allclose(grads, powers[None, :, None] * np.asarray(v)[:, None, :], rtol=1e-5)
    norms = gradflow.step_norms(grads)
    assert norms.shape == (B, T_LONG)
    np.testing.assert_allclose(norms, v_norms[:, None] * powers[None, :], rtol=1e-5)
    np.testing.assert_allclose(gradflow.mean_over_batch(norms), v_norms.mean() * powers, rtol=1e-5)


def test_step_norms_and_mean_over_batch():
    """step_norms vs numpy.linalg.norm over the feature axes of every leaf; mean_over_batch vs numpy.mean."""
    grads = {
        "h": normal(15, (B, T, H)),
        "extra": normal(16, (B, T, 2, 3)),
        "lstm": LSTMCarry(*normal(17, (2, B, T, H))),
    }
    norms = gradflow.step_norms(grads)
    expected = jax.tree.map(lambda g: np.linalg.norm(np.asarray(g).reshape(B, T, -1), axis=-1), grads)
    assert_tree_close(norms, expected)
    assert_tree_close(gradflow.mean_over_batch(norms), jax.tree.map(lambda n: n.mean(axis=0), expected))
    for scale in (1e25, 1e-25):  # squares would overflow / flush to zero in float32; the norms must not
        factor = jnp.float32(scale)
        scaled = gradflow.step_norms(jax.tree.map(lambda g, f=factor: g * f, grads))
        assert_tree_close(scaled, jax.tree.map(lambda n, s=scale: n * s, expected), atol=0.0)


def reference_final_jacobians(cell, params, xs):
    """J_t = d h_T / d carry_t by jax.jacrev of an explicit loop restarted from each step's carry, per example."""
    batch, num_steps = xs.shape[:2]
    _, _, carries = loop(cell, params, xs)
    per_step = []
    for t in range(num_steps):

        def last_hidden(carry, t=t):
            for s in range(t + 1, num_steps):
                carry, _ = step_input(cell, params, carry, xs[:, s])
            return first_leaf(carry)

        jac = jax.jacrev(last_hidden)(carries[t])  # leaves [b, h_out, b, h_in]: keep each example's own block
        per_step.append(jax.tree.map(lambda j: jnp.stack([j[i, :, i] for i in range(batch)]), jac))
    return stack_time(per_step)


@pytest.mark.parametrize("name", ["rnn", "lstm_peephole"])
def test_final_output_jacobians_and_norms(name):
    """final_output_jacobians vs jacrev of h_T w.r.t. carry_t (LSTM: hidden and cell leaf); norms vs numpy."""
    cell, params, xs = CELLS[name], make_params(CELLS[name], seed=80), normal(18, (B, 5, D))
    jacobians = jax.jit(lambda p, x: gradflow.final_output_jacobians(cell, p, x))(params, xs)
    expected = reference_final_jacobians(cell, params, xs)
    assert jax.tree.leaves(jacobians)[0].shape == (B, 5, H, H)
    assert_tree_close(jacobians, expected)
    np.testing.assert_allclose(first_leaf(jacobians)[:, -1], np.broadcast_to(np.eye(H), (B, H, H)), atol=1e-7)

    frobenius, spectral = gradflow.jacobian_norms(jacobians)
    for j, fro, two in zip(
        jax.tree.leaves(jacobians), jax.tree.leaves(frobenius), jax.tree.leaves(spectral), strict=True
    ):
        j = np.asarray(j, np.float64)
        np.testing.assert_allclose(fro, np.linalg.norm(j, "fro", axis=(-2, -1)), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(two, np.linalg.norm(j, 2, axis=(-2, -1)), rtol=1e-5, atol=1e-7)


def test_spectral_radii_vs_numpy():
    """spectral_radius and block_spectral_radii (LSTM [h, 4h], GRU [h, 3h]) vs max |numpy.linalg.eigvals|."""
    for g, seed in [(1, 19), (4, 20), (3, 21)]:
        w = normal(seed, (H, g * H))
        blocks = np.split(np.asarray(w, np.float64), g, axis=1)
        expected = np.array([np.abs(np.linalg.eigvals(b)).max() for b in blocks])
        np.testing.assert_allclose(gradflow.block_spectral_radii(w), expected, rtol=1e-5)
        np.testing.assert_allclose(gradflow.spectral_radius(w[:, :H]), expected[0], rtol=1e-5)


def test_user_cell_indrnn_closed_form():
    """IndRNN with every pre-activation positive is linear and diagonal: dL/dh_t = u^(T-t) * v, J_t = diag(u^(T-t))."""
    cell = CELLS["indrnn"]
    u = jnp.asarray(np.linspace(0.3, 0.95, H), jnp.float32)
    params = {"w": normal(22, (D, H), scale=0.1), "u": u, "b": jnp.full((H,), 3.0, jnp.float32)}
    assert jax.tree.structure(params) == jax.tree.structure(
        jax.eval_shape(lambda: cell.init_params(jax.random.key(0), D, H))
    )
    xs, v = normal(23, (B, T, D)), normal(24, (B, H))

    @jax.jit
    def diagnostics(params, xs, v):
        _, grads = gradflow.carry_gradients(lambda r: jnp.sum(r.outputs[:, -1] * v), cell, params, xs)
        return grads, gradflow.final_output_jacobians(cell, params, xs)

    with cell_context("indrnn"):
        _, outputs, _ = loop(cell, params, xs)
        grads, jacobians = diagnostics(params, xs, v)
    assert np.all(np.asarray(outputs) > 0.0)  # the ReLU never clips: the closed form applies
    powers = np.asarray(u)[None, :] ** np.arange(T - 1, -1, -1.0)[:, None]  # [t, h]: u^(T-t)
    np.testing.assert_allclose(grads, powers[None] * np.asarray(v)[:, None, :], rtol=1e-5)
    np.testing.assert_allclose(
        jacobians, np.broadcast_to(powers[:, :, None] * np.eye(H), (B, T, H, H)), rtol=1e-5, atol=1e-7
    )
    frobenius, spectral = gradflow.jacobian_norms(jacobians)
    np.testing.assert_allclose(frobenius, np.broadcast_to(np.linalg.norm(powers, axis=-1), (B, T)), rtol=1e-5)
    np.testing.assert_allclose(spectral, np.broadcast_to(powers.max(axis=-1), (B, T)), rtol=1e-5)
