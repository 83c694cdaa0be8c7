"""seqjax.losses against NumPy: the masked cross-entropy and accuracy that every model's loss goes through."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import normal

from seqjax import losses
from seqjax.attention.masks import length_mask


def test_the_masked_scores_are_the_mean_over_scored_positions_written_again_in_numpy():
    logits = np.asarray(normal(0, (3, 5, 4)), np.float64)
    targets = np.random.default_rng(1).integers(0, 4, (3, 5))
    lengths = np.array([5, 2, 0])
    mask = np.arange(5)[None, :] < lengths[:, None]
    np.testing.assert_array_equal(length_mask(jnp.asarray(lengths), 5), mask)
    log_p = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
    nll = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0]
    args = jnp.asarray(logits, jnp.float32), jnp.asarray(targets, jnp.int32), jnp.asarray(mask)
    np.testing.assert_allclose(losses.token_nll(*args[:2]), nll, rtol=1e-5)
    np.testing.assert_allclose(losses.masked_cross_entropy(*args), nll[mask].mean(), rtol=1e-6)
    right = np.argmax(logits, -1) == targets
    assert float(losses.masked_accuracy(*args)) == pytest.approx(right[mask].mean())


def test_an_unscored_infinite_loss_is_left_out_and_an_empty_mask_scores_zero():
    logits = jnp.asarray([[[0.0, 0.0], [-jnp.inf, 0.0]]])  # position 1's target 0 has nll = inf
    targets = jnp.asarray([[1, 0]])
    mask = jnp.asarray([[True, False]])
    assert float(losses.masked_cross_entropy(logits, targets, mask)) == pytest.approx(np.log(2))
    assert float(losses.masked_cross_entropy(logits, targets, jnp.zeros_like(mask))) == 0.0
    assert float(losses.masked_accuracy(logits, targets, jnp.zeros_like(mask))) == 0.0


def test_bfloat16_logits_are_scored_in_float32():
    logits = normal(2, (2, 3, 7)).astype(jnp.bfloat16)
    targets = jnp.asarray(np.random.default_rng(3).integers(0, 7, (2, 3)), jnp.int32)
    nll = losses.token_nll(logits, targets)
    assert nll.dtype == jnp.float32
    exact = np.asarray(logits.astype(jnp.float32), np.float64)  # the bfloat16 values themselves, in float64
    log_p = exact - np.log(np.sum(np.exp(exact), -1, keepdims=True))
    expected = -np.take_along_axis(log_p, np.asarray(targets)[..., None], -1)[..., 0]
    np.testing.assert_allclose(nll, expected, rtol=1e-6)  # bfloat16 arithmetic would be off by about 1e-2


def _numpy_nll_and_gradient(logits, targets, weights):
    """sum_i w_i nll_i and its gradient w_i (softmax(logits_i) - onehot(y_i)), in float64."""
    z = logits - logits.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    onehot = np.eye(logits.shape[-1])[targets]
    nll = -np.log(np.sum(p * onehot, -1))
    return np.sum(weights * nll), weights[..., None] * (p - onehot)


def test_the_token_loss_gradient_and_forward_derivative_are_softmax_minus_onehot():
    logits = np.asarray(normal(4, (3, 4, 9), scale=3.0), np.float64)
    targets = np.random.default_rng(5).integers(0, 9, (3, 4))
    weights = np.random.default_rng(6).standard_normal((3, 4))
    value, gradient = _numpy_nll_and_gradient(logits, targets, weights)
    loss = lambda x: jnp.sum(jnp.asarray(weights, jnp.float32) * losses.token_nll(x, jnp.asarray(targets)))
    got_value, got_gradient = jax.value_and_grad(loss)(jnp.asarray(logits, jnp.float32))
    np.testing.assert_allclose(float(got_value), value, rtol=1e-5)
    np.testing.assert_allclose(got_gradient, gradient, rtol=1e-4, atol=1e-6)
    direction = np.random.default_rng(7).standard_normal(logits.shape)
    _, tangent = jax.jvp(loss, (jnp.asarray(logits, jnp.float32),), (jnp.asarray(direction, jnp.float32),))
    np.testing.assert_allclose(float(tangent), np.sum(gradient * direction), rtol=1e-4)


def test_the_token_loss_is_bit_identical_to_log_softmax_then_the_targets_entry():
    """The one-pass derivative changes no bit of values or gradients against autodiff of the plain expression."""
    logits = normal(8, (4, 6, 300), scale=4.0)
    targets = jnp.asarray(np.random.default_rng(9).integers(0, 300, (4, 6)))
    weights = normal(10, (4, 6))

    def plain(x, y):
        return -jnp.take_along_axis(jax.nn.log_softmax(x, axis=-1), y[..., None], axis=-1)[..., 0]

    for nll in (plain, losses.token_nll):
        values = jax.jit(nll)(logits, targets)
        gradient = jax.jit(jax.grad(lambda x, f=nll: jnp.sum(weights * f(x, targets))))(logits)
        if nll is plain:
            expected = (values, gradient)
    np.testing.assert_array_equal(values, expected[0])
    np.testing.assert_array_equal(gradient, expected[1])
