"""Recurrences linear in the carry: minGRU and minLSTM against their equations written again in NumPy, the
associative scan (and the log-space form) against the step-by-step scan in values and gradients, with lengths,
reverse reading and probes, and a user's linear cell whose gradient probe is a^(T - t)."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import layers
from seqjax.cells import cell_by_name, linear_cell, lstm, mingru, minlstm
from seqjax.cells import linear as linear_lib
from seqjax.scan import truncated_unroll, unroll

B, T, D, H = 3, 7, 2, 4
LENGTHS = np.array([7, 4, 1])


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _g(x):
    return np.where(x >= 0, x + 0.5, _sigmoid(x))


def _by_hand(update, params, xs, lengths, activation):
    """The recurrence stepped in float64: ``h = update(k, h, candidate)`` with ``k = x_t W + b``; padded steps
    hold h and output 0."""
    w, b = np.asarray(params["w_ih"], np.float64), np.asarray(params["b"], np.float64)
    candidate = _g if activation == "g" else (lambda x: x)
    h, ys = np.zeros((xs.shape[0], H)), np.zeros((xs.shape[0], xs.shape[1], H))
    for t in range(xs.shape[1]):
        new = update(xs[:, t] @ w + b, h, candidate)
        valid = (t < lengths)[:, None]
        h = np.where(valid, new, h)
        ys[:, t] = np.where(valid, new, 0.0)
    return h, ys


def mingru_by_hand(params, xs, lengths, activation):
    """Feng et al. (2024), minGRU: z = sigma(x W_z + b_z), h~ = g(x W_h + b_h), h = (1 - z) h + z h~."""

    def update(k, h, candidate):
        z, h_tilde = _sigmoid(k[:, :H]), candidate(k[:, H:])
        return (1 - z) * h + z * h_tilde

    return _by_hand(update, params, xs, lengths, activation)


def minlstm_by_hand(params, xs, lengths, activation):
    """minLSTM: f, i = sigma(.), h~ = g(.), f' = f / (f + i), i' = i / (f + i), h = f' h + i' h~."""

    def update(k, h, candidate):
        f, i, h_tilde = _sigmoid(k[:, :H]), _sigmoid(k[:, H : 2 * H]), candidate(k[:, 2 * H :])
        return f / (f + i) * h + i / (f + i) * h_tilde

    return _by_hand(update, params, xs, lengths, activation)


def signed_mingru_by_hand(params, xs, lengths, activation):
    """Grazzi et al. (2025)'s stretch of minGRU's multiplier 1 - z to 2 (1 - z) - 1: h = (1 - 2 z) h + z h~."""

    def update(k, h, candidate):
        z, h_tilde = _sigmoid(k[:, :H]), candidate(k[:, H:])
        return (2 * (1 - z) - 1) * h + z * h_tilde

    return _by_hand(update, params, xs, lengths, activation)


CELLS = {
    "mingru": (lambda: mingru(), mingru_by_hand, "identity"),
    "mingru_signed": (lambda: cell_by_name("mingru_signed"), signed_mingru_by_hand, "identity"),
    "mingru_g": (lambda: mingru("g"), mingru_by_hand, "g"),
    "minlstm": (lambda: minlstm(), minlstm_by_hand, "identity"),
    "minlstm_g": (lambda: minlstm("g"), minlstm_by_hand, "g"),
}


def _params_and_inputs(cell, seed=0):
    params = cell.init_params(jax.random.key(seed), D, H)
    params = jax.tree.map(lambda a: a + 0.5 * jax.random.normal(jax.random.key(seed + 1), a.shape), params)
    xs = jax.random.normal(jax.random.key(seed + 2), (B, T, D))
    return params, xs


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("parallel", [False, True], ids=["scan", "associative"])
def test_each_cell_follows_its_equations(name, parallel):
    make, by_hand, activation = CELLS[name]
    cell = make()
    params, xs = _params_and_inputs(cell)
    result = unroll(cell, params, xs, lengths=jnp.asarray(LENGTHS), parallel=parallel)
    h, ys = by_hand(params, np.asarray(xs, np.float64), LENGTHS, activation)
    np.testing.assert_allclose(np.asarray(result.outputs), ys, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(np.asarray(result.carry), h, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_the_associative_scan_equals_the_step_by_step_scan_in_values_and_gradients(name, reverse):
    """With lengths and a probe on every carry: outputs, final carry, dL/dparams and dL/dcarry_t."""
    cell = CELLS[name][0]()
    params, xs = _params_and_inputs(cell, seed=3)
    probe = jnp.zeros((B, T, H))

    def loss(params, probe, parallel):
        result = unroll(cell, params, xs, lengths=jnp.asarray(LENGTHS), reverse=reverse, probe=probe,
                        parallel=parallel, return_carries=True)  # fmt: skip
        return jnp.sum(jnp.sin(result.outputs)) + jnp.sum(result.carry**2), result

    both = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True), static_argnums=2)
    (value, scanned), grads = both(params, probe, False)
    (value_p, parallel), grads_p = both(params, probe, True)
    np.testing.assert_allclose(value_p, value, rtol=1e-5)
    for got, want in zip(jax.tree.leaves((parallel, grads_p)), jax.tree.leaves((scanned, grads)), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", [mingru("g"), minlstm("g")], ids=["mingru_g", "minlstm_g"])
def test_the_log_space_form_is_the_plain_recurrence(cell):
    """The paper's log-space parallel form: its coefficients are the logs of the plain ones, and ``log_scan`` on
    them equals the associative scan of the plain coefficients, gradients included."""
    params, xs = _params_and_inputs(cell, seed=5)
    us = cell.project(params, jnp.swapaxes(xs, 0, 1))
    a, b = cell.linear.coefficients(params, us)
    log_a, log_b = cell.linear.log_coefficients(params, us)
    np.testing.assert_allclose(np.exp(log_a), a, rtol=1e-6)
    np.testing.assert_allclose(np.exp(log_b), b, rtol=1e-5)
    h0 = jnp.full((B, H), 0.25)

    def plain(a, b):
        return jnp.sum(jnp.sin(linear_lib.associative_scan(a, b, h0)))

    def logarithmic(a, b):
        return jnp.sum(jnp.sin(linear_lib.log_scan(jnp.log(a), jnp.log(b), jnp.log(h0))))

    np.testing.assert_allclose(jax.jit(logarithmic)(a, b), jax.jit(plain)(a, b), rtol=1e-5)
    gradients = [jax.jit(jax.grad(f, (0, 1)))(a, b) for f in (logarithmic, plain)]
    for got, want in zip(*gradients, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cell", [mingru("g"), minlstm("g")], ids=["mingru_g", "minlstm_g"])
def test_the_log_space_path_takes_an_initial_carry_of_either_sign(cell):
    """``unroll(parallel=True)`` in log space from an initial carry with negative entries equals a Python loop over
    the cell's step (the log of a negative h_0 once gave 0.32 wrong at h_0 = -0.5)."""
    params, xs = _params_and_inputs(cell, seed=6)
    h0 = jnp.asarray(np.linspace(-0.9, 0.7, B * H, dtype=np.float32).reshape(B, H))
    h, loop = h0, []
    for t in range(T):
        h, y = cell.step(params, h, cell.project(params, xs[:, t]))
        loop.append(y)
    outputs = unroll(cell, params, xs, initial_carry=h0, parallel=True).outputs
    np.testing.assert_allclose(np.asarray(outputs), np.stack(loop, axis=1), rtol=1e-5, atol=1e-6)


def test_a_users_linear_cell_in_plain_functions_has_the_probe_gradient_a_to_the_t():
    """h_t = a h_{t-1} + x_t W with a fixed a = 0.9: d h_T / d carry_t = a^(T - t), on both paths."""

    def init_params(key, input_size, hidden_size):
        return {"w": jax.random.normal(key, (input_size, hidden_size))}

    def coefficients(params, x):
        b = x @ params["w"]
        return jnp.full_like(b, 0.9), b

    cell = linear_cell(init_params, coefficients, lambda params, batch: jnp.zeros((*batch, params["w"].shape[1])))
    params = cell.init_params(jax.random.key(0), D, H)
    xs = jax.random.normal(jax.random.key(1), (B, T, D))
    expected = np.broadcast_to((0.9 ** (T - 1 - np.arange(T)))[None, :, None], (B, T, H))
    for parallel in (False, True):
        last = lambda probe, parallel=parallel: jnp.sum(unroll(cell, params, xs, probe=probe, parallel=parallel).carry)
        np.testing.assert_allclose(jax.grad(last)(jnp.zeros((B, T, H))), expected, rtol=1e-6)


def test_the_sequence_functions_equal_a_python_loop():
    a = jax.random.uniform(jax.random.key(0), (T, B, H), minval=0.1, maxval=1.0)
    b = jax.random.normal(jax.random.key(1), (T, B, H))
    h0 = jax.random.normal(jax.random.key(2), (B, H))
    h, expected = np.asarray(h0), []
    for t in range(T):
        h = np.asarray(a[t]) * h + np.asarray(b[t])
        expected.append(h)
    np.testing.assert_allclose(linear_lib.associative_scan(a, b, h0), np.stack(expected), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(linear_lib.sequential_scan(a, b, h0), np.stack(expected), rtol=1e-6, atol=1e-6)


def test_layers_truncated_bptt_and_names_work_for_linear_cells():
    """Two bidirectional minGRU layers: the associative path equals the scan; truncated BPTT carries the state."""
    cell = cell_by_name("mingru")
    keys = jax.random.split(jax.random.key(0), 2)
    params = layers.init_layers(cell, keys, D, H, True)
    xs = jax.random.normal(jax.random.key(1), (B, T, D))
    outputs = [
        layers.unroll_layers(cell, params, xs, both_ways=True, lengths=jnp.asarray(LENGTHS), parallel=parallel).outputs
        for parallel in (False, True)
    ]
    np.testing.assert_allclose(np.asarray(outputs[1]), np.asarray(outputs[0]), rtol=1e-5, atol=1e-6)
    one = unroll(cell, params[0][0], xs, parallel=True)
    chunked = truncated_unroll(cell, params[0][0], xs, chunk_len=3)
    np.testing.assert_allclose(np.asarray(chunked.outputs), np.asarray(one.outputs), rtol=1e-5, atol=1e-6)
    assert cell_by_name("minlstm").name == "minlstm"


def test_parallel_on_a_cell_that_is_not_linear_is_refused():
    cell = lstm()
    params = cell.init_params(jax.random.key(0), D, H)
    with pytest.raises(ValueError, match="cell 'lstm' is not linear in its carry"):
        unroll(cell, params, jnp.zeros((B, T, D)), parallel=True)


def test_the_examples_diagonal_cell_runs_on_both_paths_by_its_file():
    """examples/my_cells.py:diagonal, a user's linear cell by its file: the associative scan equals the scan."""
    cell = cell_by_name(f"{Path(__file__).resolve().parents[1] / 'examples' / 'my_cells.py'}:diagonal")
    params = cell.init_params(jax.random.key(0), D, H)
    xs = jax.random.normal(jax.random.key(1), (B, T, D))
    decay = 1.0 / (1.0 + np.exp(-np.asarray(params["nu"])))
    h, by_hand = np.zeros((B, H)), []
    for t in range(T):
        h = decay * h + (1.0 - decay) * (np.asarray(xs[:, t]) @ np.asarray(params["b"]))
        by_hand.append(h)
    for parallel in (False, True):
        got = unroll(cell, params, xs, parallel=parallel).outputs
        np.testing.assert_allclose(np.asarray(got), np.stack(by_hand, axis=1), rtol=1e-5, atol=1e-6)


def test_the_signed_mingru_holds_parity_at_any_length_with_gates_set_by_hand():
    """z = 1 on a one, 0 on a zero; h~ = 1 on a one: h -> -h + 1 on a one, h -> h on a zero, so from h_0 = 0 the
    state is the parity of the ones read so far (a multiplier of -1, outside the unsigned minGRU's (0, 1))."""
    cell = cell_by_name("mingru_signed")
    big = 30.0  # sigma(30) = 1 - 9e-14: the multipliers are -1 and 1 to float32 precision
    params = {"w_ih": jnp.asarray([[-big, 0.0], [big, 1.0]]), "b": jnp.zeros((2,))}  # rows: bit 0, bit 1; h = 1
    bits = np.random.default_rng(0).integers(0, 2, (4, 500))
    result = unroll(cell, params, jnp.asarray(np.eye(2)[bits], jnp.float32), parallel=True)
    np.testing.assert_allclose(np.asarray(result.outputs[..., 0]), np.cumsum(bits, axis=1) % 2, atol=1e-5)
