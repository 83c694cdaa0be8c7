"""The LRU (complex, real and signed eigenvalues) and the RG-LRU against their papers' equations written again in
NumPy, their initialisations against the papers' distributions, and the associative scan against the step-by-step
scan in values and gradients with lengths, reverse reading, probes and resets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import layers
from seqjax.cells import cell_by_name, lru, rglru
from seqjax.cells.rglru import sqrt_bounded_derivative
from seqjax.scan import truncated_unroll, unroll

B, T, D, H = 3, 7, 2, 4
LENGTHS = np.array([7, 4, 1])


def _f64(params):
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def lru_by_hand(params, xs, lengths, eigenvalues):
    """Orvieto et al. (2023): lambda = exp(-exp(nu) + i exp(theta)), x = lambda x + exp(gamma) (u B),
    y = Re(x C) + u D; the real variants lambda = exp(-exp(nu)) and 2 exp(-exp(nu)) - 1. Stepped in complex128."""
    p = _f64(params)
    modulus = np.exp(-np.exp(p["nu_log"]))
    if eigenvalues == "complex":
        lam = modulus * np.exp(1j * np.exp(p["theta_log"]))
        b, c = p["b_re"] + 1j * p["b_im"], p["c_re"] + 1j * p["c_im"]
    else:
        lam = modulus if eigenvalues == "real" else 2 * modulus - 1
        b, c = p["b"], p["c"]
    state = np.zeros((xs.shape[0], lam.shape[0]), np.complex128)
    ys = np.zeros((xs.shape[0], xs.shape[1], p["d"].shape[1]))
    for t in range(xs.shape[1]):
        new = lam * state + np.exp(p["gamma_log"]) * (xs[:, t] @ b)
        valid = (t < lengths)[:, None]
        state = np.where(valid, new, state)
        ys[:, t] = np.where(valid, np.real(new @ c) + xs[:, t] @ p["d"], 0.0)
    return state, ys


def rglru_by_hand(params, xs, lengths, c=8.0):
    """De et al. (2024): r, i = sigma(.), a_t = sigma(Lambda)^(c r), h = a_t h + sqrt(1 - a_t^2) (i v)."""
    p = _f64(params)
    sigmoid = lambda z: 1 / (1 + np.exp(-z))
    a = sigmoid(p["log_a"])
    h = np.zeros((xs.shape[0], H))
    ys = np.zeros((xs.shape[0], xs.shape[1], H))
    for t in range(xs.shape[1]):
        k = xs[:, t] @ p["w_ih"] + p["b"]
        r, i, v = sigmoid(k[:, :H]), sigmoid(k[:, H : 2 * H]), k[:, 2 * H :]
        a_t = a ** (c * r)
        new = a_t * h + np.sqrt(1 - a_t**2) * (i * v)
        valid = (t < lengths)[:, None]
        h = np.where(valid, new, h)
        ys[:, t] = np.where(valid, new, 0.0)
    return h, ys


CELLS = {
    "lru": lambda params, xs, lengths: lru_by_hand(params, xs, lengths, "complex"),
    "lru_real": lambda params, xs, lengths: lru_by_hand(params, xs, lengths, "real"),
    "lru_signed": lambda params, xs, lengths: lru_by_hand(params, xs, lengths, "signed"),
    "rglru": rglru_by_hand,
}


def _params_and_inputs(cell, seed=0):
    params = cell.init_params(jax.random.key(seed), D, H)
    xs = jax.random.normal(jax.random.key(seed + 2), (B, T, D))
    return params, xs


@pytest.mark.parametrize("name", CELLS)
def test_each_cell_follows_its_equations_on_both_paths(name):
    cell = cell_by_name(name)
    params, xs = _params_and_inputs(cell)
    h, ys = CELLS[name](params, np.asarray(xs, np.float64), LENGTHS)
    run = jax.jit(lambda params, xs, parallel: unroll(cell, params, xs, lengths=jnp.asarray(LENGTHS),
                                                      parallel=parallel), static_argnums=2)  # fmt: skip
    for parallel in (False, True):
        result = run(params, xs, parallel)
        np.testing.assert_allclose(np.asarray(result.outputs), ys, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(np.asarray(result.carry), h, rtol=2e-5, atol=2e-6)
    assert result.outputs.dtype == jnp.float32


@pytest.mark.parametrize("name", CELLS)
def test_the_associative_scan_equals_the_step_by_step_scan_in_values_and_gradients(name):
    """Reading in reverse, with lengths, a probe on every carry (complex for the LRU) and a reset mid-row."""
    cell = cell_by_name(name)
    params, xs = _params_and_inputs(cell, seed=3)
    carry0 = cell.init_carry(params, (B,))
    probe = jnp.zeros((B, T, *carry0.shape[1:]), carry0.dtype)
    resets = jnp.zeros((B, T), bool).at[0, 3].set(True)

    def loss(params, probe, parallel, use_resets):
        result = unroll(cell, params, xs, lengths=jnp.asarray(LENGTHS), reverse=True, parallel=parallel,
                        probe=None if use_resets else probe, resets=resets if use_resets else None)  # fmt: skip
        return jnp.sum(jnp.sin(result.outputs)) + jnp.sum(jnp.abs(result.carry) ** 2)

    both = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=(2, 3))
    for use_resets in (False, True) if name == "lru" else (False,):  # the LRU's resets: also tests/test_resets.py
        value, grads = both(params, probe, False, use_resets)
        value_p, grads_p = both(params, probe, True, use_resets)
        np.testing.assert_allclose(value_p, value, rtol=1e-5)
        for got, want in zip(jax.tree.leaves(grads_p), jax.tree.leaves(grads), strict=True):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


def test_the_lru_starts_on_its_ring_with_the_gamma_normalisation():
    """|lambda| in [r_min, r_max] with r^2 uniform, phases in [0, max_phase], gamma = sqrt(1 - |lambda|^2)."""
    params = lru(r_min=0.4, r_max=0.9, max_phase=np.pi / 4, state_size=2000).init_params(jax.random.key(0), 3, 2)
    radius = np.exp(-np.exp(np.asarray(params["nu_log"], np.float64)))
    phase = np.exp(np.asarray(params["theta_log"], np.float64))
    assert radius.min() >= 0.4 - 1e-6 and radius.max() <= 0.9 + 1e-6
    assert phase.min() >= 0 and phase.max() <= np.pi / 4 + 1e-6
    squared = (radius**2 - 0.4**2) / (0.9**2 - 0.4**2)  # uniform on [0, 1] if the draw is uniform on the ring's area
    assert abs(squared.mean() - 0.5) < 0.03 and abs(np.median(squared) - 0.5) < 0.04
    np.testing.assert_allclose(np.exp(np.asarray(params["gamma_log"])), np.sqrt(1 - radius**2), rtol=1e-5)
    assert params["b_re"].shape == (3, 2000) and params["c_im"].shape == (2000, 2) and params["d"].shape == (3, 2)
    assert lru().init_params(jax.random.key(0), 3, 5)["c_re"].shape == (5, 5)


def test_the_signed_lru_starts_with_eigenvalues_of_both_signs_and_the_real_one_in_zero_one():
    signed = lru("signed", r_min=0.5, r_max=0.99).init_params(jax.random.key(0), 2, 1000)
    lam = 2 * np.exp(-np.exp(np.asarray(signed["nu_log"], np.float64))) - 1
    assert 0.4 < (lam < 0).mean() < 0.6
    assert np.abs(lam).min() >= 0.5 - 1e-5 and np.abs(lam).max() <= 0.99 + 1e-5
    np.testing.assert_allclose(np.exp(np.asarray(signed["gamma_log"])), np.sqrt(1 - lam**2), rtol=1e-4)
    real = lru("real").init_params(jax.random.key(0), 2, 1000)
    lam = np.exp(-np.exp(np.asarray(real["nu_log"], np.float64)))
    assert lam.min() > 0 and lam.max() < 1 and "theta_log" not in real


def test_the_rglru_starts_on_its_ring_and_its_gate_powers_a():
    """a = sigma(Lambda) in [0.9, 0.999]; with the recurrence gate saturated open (r = 1) a_t = a^8, with it
    closed (r = 0) a_t = 1 and the input is shut out (sqrt(1 - 1) = 0)."""
    cell = rglru()
    params = cell.init_params(jax.random.key(0), 2, 1000)
    a = 1 / (1 + np.exp(-np.asarray(params["log_a"], np.float64)))
    assert a.min() >= 0.9 - 1e-6 and a.max() <= 0.999 + 1e-6
    small = cell.init_params(jax.random.key(1), 2, 3)
    u = jnp.concatenate([jnp.full((1, 3), 40.0), jnp.zeros((1, 3)), jnp.ones((1, 3))], axis=-1)
    a_t, _ = cell.linear.coefficients(small, u)
    np.testing.assert_allclose(np.asarray(a_t)[0], (1 / (1 + np.exp(-np.asarray(small["log_a"])))) ** 8, rtol=1e-5)
    a_t, b_t = cell.linear.coefficients(small, u.at[:, :3].set(-40.0))
    np.testing.assert_allclose(np.asarray(a_t), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(b_t), 0.0, atol=1e-6)


def test_the_bounded_square_root_has_the_square_roots_value_and_a_capped_derivative():
    x = jnp.array([0.0, 1e-12, 0.25, 4.0])
    np.testing.assert_allclose(sqrt_bounded_derivative(x), np.sqrt(np.asarray(x)), rtol=1e-7)
    slope = jax.vmap(jax.grad(sqrt_bounded_derivative))(x)
    np.testing.assert_allclose(slope, [1000.0, 1000.0, 1.0, 0.25], rtol=1e-5)


def test_bad_ring_bounds_are_refused_in_one_line():
    with pytest.raises(ValueError, match="r_min < r_max"):
        lru(r_min=0.9, r_max=0.5)
    with pytest.raises(ValueError, match="unknown eigenvalues 'imaginary'"):
        lru("imaginary")
    with pytest.raises(ValueError, match="a_min < a_max < 1"):
        rglru(a_max=1.0)


def test_two_way_stacked_lru_layers_and_truncated_bptt_follow_the_scan():
    """Two bidirectional LRU layers (complex carries in both directions): the associative path equals the scan;
    truncated BPTT's forward values equal one unroll."""
    cell = cell_by_name("lru")
    params = layers.init_layers(cell, jax.random.split(jax.random.key(0), 2), D, H, True)
    xs = jax.random.normal(jax.random.key(1), (B, T, D))
    run = jax.jit(lambda parallel: layers.unroll_layers(cell, params, xs, both_ways=True, lengths=jnp.asarray(LENGTHS),
                                                        parallel=parallel).outputs, static_argnums=0)  # fmt: skip
    np.testing.assert_allclose(np.asarray(run(True)), np.asarray(run(False)), rtol=1e-5, atol=1e-6)
    one = unroll(cell, params[0][0], xs, parallel=False)
    chunked = truncated_unroll(cell, params[0][0], xs, chunk_len=3)
    np.testing.assert_allclose(np.asarray(chunked.outputs), np.asarray(one.outputs), rtol=1e-5, atol=1e-6)
