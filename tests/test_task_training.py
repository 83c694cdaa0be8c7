"""seqjax.models.task_training: masked scores against NumPy, MNIST-1D epochs, the input-gradient profile against
finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import normal

from seqjax.models import task_model
from seqjax.models import task_training as tt


def _batch():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, (2, 5))
    mask = np.array([[0, 0, 1, 0, 1], [1, 1, 1, 1, 1]], bool)
    return tt.Batch(jnp.zeros((2, 5), jnp.int32), jnp.asarray(targets, jnp.int32), jnp.asarray(mask)), targets, mask


def test_scores_count_the_masked_positions_only():
    batch, targets, mask = _batch()
    logits = np.asarray(normal(1, (2, 5, 3)))
    log_p = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
    nll = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(tt.cross_entropy(jnp.asarray(logits), batch), nll[mask].mean(), rtol=1e-6)
    right = np.argmax(logits, -1) == targets
    assert float(tt.accuracy(jnp.asarray(logits), batch)) == pytest.approx(right[mask].mean())
    every = [np.all(right[b][mask[b]]) for b in range(2)]
    assert float(tt.sequence_accuracy(jnp.asarray(logits), batch)) == pytest.approx(np.mean(every))
    flat = np.asarray(normal(2, (2, 3)))  # the flatten readout: the last step's answer
    expected = np.mean(np.argmax(flat, -1)[mask[:, -1]] == targets[:, -1][mask[:, -1]])
    assert float(tt.accuracy(jnp.asarray(flat), batch)) == pytest.approx(expected)


def test_an_epoch_visits_every_example_once_and_a_step_is_a_function_of_its_number():
    inputs = np.arange(10, dtype=np.float32).reshape(10, 1, 1) * np.ones((1, 4, 1), np.float32)
    labels = np.arange(10) % 3
    key = jax.random.key(0)
    batch_of = jax.jit(lambda step: tt.epoch_batch(inputs, labels, key, step, 3))
    epoch = [np.asarray(batch_of(s).inputs[:, 0, 0]) for s in range(3)]  # 10 // 3 = 3 batches, one example left out
    seen = np.concatenate(epoch).astype(int)
    assert len(set(seen.tolist())) == 9
    again = batch_of(1)
    np.testing.assert_array_equal(again.inputs[:, 0, 0], epoch[1])
    np.testing.assert_array_equal(again.targets[:, -1], labels[epoch[1].astype(int)])
    assert again.mask.tolist() == [[False, False, False, True]] * 3
    assert not np.array_equal(np.asarray(batch_of(3).inputs[:, 0, 0]), epoch[0])  # the next epoch reorders


def test_the_input_gradient_profile_is_the_mean_norm_of_finite_differences():
    config = task_model.TaskModelConfig("gru", 3, True, 3, 4)
    params = task_model.init_params(config, jax.random.key(1))
    batch = tt.Batch(jnp.asarray([[0, 2, 1, 1], [2, 2, 0, 1]], jnp.int32), jnp.asarray([[0, 1, 2, 0]] * 2, jnp.int32),
                     jnp.ones((2, 4), bool))  # fmt: skip
    x = np.asarray(task_model.features(config, batch.inputs), np.float64)

    jitted = jax.jit(lambda features: tt.cross_entropy(task_model.apply_features(config, params, features), batch))

    def loss(features):
        return float(jitted(jnp.asarray(features, jnp.float32)))

    eps, grads = 1e-2, np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        grads[index] = (loss(up) - loss(down)) / (2 * eps)
    expected = np.linalg.norm(grads, axis=-1).mean(axis=0)
    profile = jax.jit(lambda p: tt.input_gradient_profile(config, p, batch))(params)
    np.testing.assert_allclose(profile, expected, rtol=2e-2, atol=1e-4)
