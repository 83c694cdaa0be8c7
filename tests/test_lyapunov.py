"""Lyapunov exponents: log|a| for a linear RNN with W = a I, every one of them; QR against the product's
singular values for a random linear map; a contracting and an expanding tanh RNN on either side of zero."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import initializers, lyapunov
from seqjax.cells import LSTMCarry, lstm, rnn

D, H, T = 2, 3, 40


@pytest.mark.parametrize("a", [0.5, -0.8, 1.2])
def test_a_linear_rnn_with_w_equal_a_times_identity_has_every_exponent_log_abs_a(a):
    cell = rnn("identity")
    params = {**cell.init_params(jax.random.key(0), D, H), "w_hh": a * jnp.eye(H)}
    xs = jax.random.normal(jax.random.key(1), (2, T, D))
    np.testing.assert_allclose(lyapunov.lyapunov_exponents(cell, params, xs, k=H), np.full(H, np.log(abs(a))),
                               rtol=1e-5)  # fmt: skip


def test_qr_gives_the_log_singular_values_of_a_repeated_linear_map():
    """For J_t = M at every step the exponents tend to the logs of |eigenvalues| of M (diagonalisable)."""
    m = np.diag([1.5, 0.7, 0.2]) @ np.eye(3)
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    m = rotation @ m @ rotation.T  # symmetric: eigenvalues 1.5, 0.7, 0.2
    got = lyapunov.exponents(jnp.asarray(np.broadcast_to(m, (2000, 3, 3)), jnp.float32), k=3)
    np.testing.assert_allclose(np.asarray(got), np.log([1.5, 0.7, 0.2]), atol=3e-3)  # a transient of order 1/T


def test_the_step_jacobians_of_an_lstm_are_those_of_its_step():
    cell = lstm()
    params = cell.init_params(jax.random.key(0), D, H)
    xs = jax.random.normal(jax.random.key(1), (5, D))
    jacobians = jax.jit(lyapunov.step_jacobians, static_argnums=0)(cell, params, xs)
    assert jacobians.shape == (5, 2 * H, 2 * H)

    def flat(carry):
        return jnp.concatenate([carry.hidden, carry.cell])

    def step(vector, x):  # by hand: one step on the flattened (h, c)
        return flat(cell.step(params, LSTMCarry(vector[:H], vector[H:]), cell.project(params, x))[0])

    by_hand = jax.jit(jax.jacfwd(step))
    carry = cell.init_carry(params, ())
    for t in range(2):
        np.testing.assert_allclose(jacobians[t], by_hand(flat(carry), xs[t]), rtol=1e-5, atol=1e-6)
        carry = cell.step(params, carry, cell.project(params, xs[t]))[0]


def test_a_contracting_tanh_rnn_stays_below_the_log_of_its_weights_norm():
    """|tanh'| <= 1 and ||W|| = 0.5 bound every ||J_t|| by 0.5: the top exponent is at most log 0.5."""
    cell = rnn(recurrent_init=initializers.recurrent_init("orthogonal", 0.5))
    params = cell.init_params(jax.random.key(0), D, H)
    xs = jax.random.normal(jax.random.key(1), (2, T, D))
    assert float(lyapunov.lyapunov_exponents(cell, params, xs)[0]) <= np.log(0.5) + 1e-6
