"""Bengio et al.'s NNLM against its equations in NumPy, its evaluation against log-softmax by hand, and learning."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import train
from seqjax.baselines import nnlm
from seqjax.models import lm_metrics

apply = jax.jit(nnlm.apply, static_argnums=0)  # one compilation instead of one per operation


def test_contexts_and_targets_by_hand():
    contexts, targets = nnlm.contexts_and_targets(np.array([4, 5, 6, 7, 8], np.int32), context=3, pad_id=0)
    expected = [[0, 0, 0], [0, 0, 4], [0, 4, 5], [4, 5, 6], [5, 6, 7]]
    np.testing.assert_array_equal(contexts, expected)
    np.testing.assert_array_equal(targets, [4, 5, 6, 7, 8])
    assert contexts.dtype == targets.dtype == np.int32
    one, first = nnlm.contexts_and_targets(np.array([3, 1]), context=1, pad_id=9)
    np.testing.assert_array_equal(one, [[9], [3]])
    np.testing.assert_array_equal(first, [3, 1])
    empty, none = nnlm.contexts_and_targets(np.zeros(0, np.int32), context=2, pad_id=0)
    assert empty.shape == (0, 2) and none.shape == (0,)


def numpy_logits(params: dict, contexts: np.ndarray, direct: bool) -> np.ndarray:
    """The module docstring's equations in float64 NumPy: concatenate, tanh layer, output (+ direct)."""
    p = {name: np.asarray(value, np.float64) for name, value in params.items()}
    x = np.concatenate([p["embedding"][contexts[:, j]] for j in range(contexts.shape[1])], axis=1)
    a = np.tanh(x @ p["hidden_w"] + p["hidden_b"])
    logits = a @ p["out_w"] + p["out_b"]
    return logits + x @ p["direct_w"] if direct else logits


def randomised(params: dict, seed: int) -> dict:
    """Every parameter redrawn N(0, 0.5^2): zero biases and a zero direct matrix would hide their terms."""
    rng = np.random.default_rng(seed)
    return {name: jnp.asarray(rng.normal(0, 0.5, value.shape), jnp.float32) for name, value in params.items()}


@pytest.mark.parametrize("direct", [False, True])
def test_apply_matches_numpy(key, direct):
    config = nnlm.NNLMConfig(vocab_size=11, context=3, embed_size=4, hidden_size=6, direct=direct)
    params = nnlm.init_params(config, key)
    assert ("direct_w" in params) == direct
    assert params["hidden_w"].shape == (12, 6) and params["out_w"].shape == (6, 11)
    params = randomised(params, seed=1)
    contexts = np.random.default_rng(2).integers(0, 11, (7, 3), dtype=np.int32)
    logits = apply(config, params, jnp.asarray(contexts))
    assert logits.shape == (7, 11) and logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, numpy_logits(params, contexts, direct), rtol=1e-5, atol=1e-5)


def test_direct_connections_start_at_zero(key):
    """With ``W = 0`` at initialisation, the two variants start as the same function."""
    contexts = jnp.array([[1, 2], [3, 0]], jnp.int32)
    plain, direct = (nnlm.NNLMConfig(vocab_size=5, context=2, embed_size=3, hidden_size=4, direct=d) for d in (0, 1))
    np.testing.assert_array_equal(
        apply(plain, nnlm.init_params(plain, key), contexts),
        apply(direct, nnlm.init_params(direct, key), contexts),
    )


def test_dropout_only_with_a_key(key):
    config = nnlm.NNLMConfig(vocab_size=5, context=2, embed_size=8, hidden_size=16, dropout=0.5)
    params = nnlm.init_params(config, key)
    contexts = jnp.array([[1, 2], [3, 0], [4, 4]], jnp.int32)
    clean = apply(config, params, contexts)
    np.testing.assert_allclose(clean, numpy_logits(params, np.asarray(contexts), False), rtol=1e-5, atol=1e-5)
    dropped = apply(config, params, contexts, jax.random.key(1))
    assert not np.allclose(dropped, clean)
    np.testing.assert_array_equal(dropped, apply(config, params, contexts, jax.random.key(1)))


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_evaluate_is_the_summed_log_softmax(key, batch_size):
    """Every one of the 23 tokens is scored once, whatever the batching (5 leaves a padded last batch)."""
    config = nnlm.NNLMConfig(vocab_size=7, context=3, embed_size=4, hidden_size=5, direct=True)
    params = randomised(nnlm.init_params(config, key), seed=1)
    ids = np.random.default_rng(2).integers(0, 7, 23, dtype=np.int32)
    nll, count = nnlm.evaluate(config, params, ids, pad_id=6, batch_size=batch_size)
    assert count == 23
    contexts = np.array([[6, 6, 6, *ids][i : i + 3] for i in range(23)])  # the context of token i, padded by hand
    logits = numpy_logits(params, contexts, direct=True)
    log_softmax = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    expected = -np.sum(log_softmax[np.arange(23), ids])
    assert nll == pytest.approx(expected, rel=1e-5)
    summary = lm_metrics.summary(nll, count)
    assert summary["perplexity"] == pytest.approx(math.exp(expected / 23), rel=1e-5)
    assert summary["tokens"] == 23


PATTERN = [0, 1, 0, 2, 1, 2]  # the token after 0 (or 1, or 2) is one of two, the token after a pair is determined


def test_a_tiny_model_learns_a_pattern_that_needs_two_tokens_of_context(key):
    """Trained on the repeating pattern 0 1 0 2 1 2, a context-2 model beats the best bigram model.

    Uniform guessing has perplexity 3. Any model that sees one previous token has perplexity 2 at
    best: each token is followed by either of two others, equally often. With two tokens of context
    the next token is determined (perplexity 1); the only uncertain prediction is the first one of
    the stream (context = padding). So < 1.5 shows that both context positions are used.
    """
    ids = np.array(PATTERN * 10, np.int32)
    config = nnlm.NNLMConfig(vocab_size=3, context=2, embed_size=4, hidden_size=16)
    contexts, targets = (jnp.asarray(a) for a in nnlm.contexts_and_targets(ids, config.context, pad_id=0))
    training = train.make_training(nnlm.batch_loss(config), train.optimizer("adam", 0.05))
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam: b ** count with an int32 count
        state = training.init(nnlm.init_params(config, key), jax.random.fold_in(key, 1))
        before = lm_metrics.summary(*nnlm.evaluate(config, state.params, ids, pad_id=0, batch_size=16))
        step = jax.jit(training.step, donate_argnums=0)
        everything = jnp.arange(len(ids), dtype=jnp.int32)
        for _ in range(150):
            state, metrics = step(state, (contexts, targets, everything))
    after = lm_metrics.summary(*nnlm.evaluate(config, state.params, ids, pad_id=0, batch_size=16))
    assert 2.5 < before["perplexity"] < 3.5  # near uniform at initialisation
    assert after["perplexity"] < 1.5, after
    assert float(metrics["loss"]) == pytest.approx(after["nats"], rel=0.05, abs=0.01)  # the loss is the mean NLL
