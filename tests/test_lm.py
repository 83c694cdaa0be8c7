"""The recurrent language model: batching, the model against a NumPy reference, truncated BPTT, perplexity, sampling."""

import json
import math

import hello
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import experiment as ex
from seqjax.data.lm_batches import all_windows, num_windows, parallel_streams, window
from seqjax.models import lm, lm_metrics, lm_training
from seqjax.models.sampling import sample

V, E, H = 7, 5, 6


def test_parallel_streams_and_windows_against_a_hand_built_stream():
    ids = np.arange(23)  # B=3: L = 7, the last 2 tokens dropped
    streams = parallel_streams(ids, 3)
    assert streams.tolist() == [[0, 1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12, 13], [14, 15, 16, 17, 18, 19, 20]]
    assert num_windows(streams, 2) == 3  # (7 - 1) // 2
    x, y = jax.jit(lambda s, i: window(s, i, 2))(jnp.asarray(streams), 1)  # as the training step calls it
    assert x.tolist() == [[2, 3], [9, 10], [16, 17]] and y.tolist() == [[3, 4], [10, 11], [17, 18]]
    inputs, targets, tail = all_windows(streams, 4)  # one full window of 4, then a tail of 2
    assert inputs.shape == (1, 3, 4)
    assert inputs[0, 0].tolist() == [0, 1, 2, 3] and targets[0, 2].tolist() == [15, 16, 17, 18]
    assert tail[0].tolist() == [[4, 5], [11, 12], [18, 19]] and tail[1].tolist() == [[5, 6], [12, 13], [19, 20]]
    with pytest.raises(ValueError, match="too few"):
        parallel_streams(np.arange(5), 3)


def _rnn_config(**kwargs):
    return lm.LMConfig(vocab_size=V, cell="rnn", num_layers=2, hidden_size=H, embed_size=E, init_scale=0.5, **kwargs)


def _numpy_lm(params, tokens, h0=None, reset_token=None):
    """Embedding -> two tanh RNN layers -> softmax, by hand: ``(log_probs [B, T, V], last hidden per layer)``; with
    ``reset_token``, h = 0 before each step that reads it."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    x = p["embedding"][np.asarray(tokens)]
    last = []
    for layer, lp in enumerate(p["layers"]):
        h = np.zeros((x.shape[0], H)) if h0 is None else np.asarray(h0[layer], np.float64)
        outputs = []
        for t in range(x.shape[1]):
            if reset_token is not None:
                h = np.where((np.asarray(tokens)[:, t] == reset_token)[:, None], 0.0, h)
            h = np.tanh(x[:, t] @ lp["w_ih"] + lp["b"] + h @ lp["w_hh"])
            outputs.append(h)
        x = np.stack(outputs, axis=1)
        last.append(h)
    logits = x @ p["out_w"] + p["out_b"]
    log_probs = (
        logits
        - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1, keepdims=True))
        - logits.max(-1, keepdims=True)
    )
    return log_probs, last


def test_apply_and_evaluate_match_a_numpy_reference_and_perplexity_is_exp_mean_nll():
    config = _rnn_config()
    params = lm.init_params(config, jax.random.key(0))
    assert set(params["layers"][0]) == {"w_ih", "w_hh", "b"}
    tokens = np.random.default_rng(0).integers(0, V, size=(2, 9))
    logits, carries = lm.apply(config, params, lm.init_carry(config, params, 2), jnp.asarray(tokens))
    log_probs, last = _numpy_lm(params, tokens)
    np.testing.assert_allclose(jax.nn.log_softmax(logits), log_probs, atol=1e-5)
    np.testing.assert_allclose(carries[1], last[1], atol=1e-5)

    nll_by_hand = -sum(log_probs[b, t, tokens[b, t + 1]] for b in range(2) for t in range(8))
    total, count = lm_training.evaluate(config, params, tokens, bptt=3)  # windows of 3, 3, then a tail of 2
    assert count == 16
    np.testing.assert_allclose(total, nll_by_hand, rtol=1e-5)
    assert lm_metrics.perplexity(total, count) == pytest.approx(math.exp(nll_by_hand / 16), rel=1e-5)
    assert lm_metrics.bits_per_token(total, count) == pytest.approx(nll_by_hand / 16 / math.log(2), rel=1e-5)


def test_packed_documents_start_from_zeros_and_the_window_before_reaches_only_the_first():
    """reset_token = 0: every layer's state entering a step that reads token 0 is zeros; the carried-in state
    reaches the steps before the first 0 of each row only. Values and the gradient w.r.t. the carried-in state."""
    config = _rnn_config(reset_token=0)
    params = lm.init_params(config, jax.random.key(0))
    tokens = np.array([[3, 4, 0, 5, 6, 0, 1, 2], [0, 1, 2, 3, 0, 4, 5, 6]])
    carries = tuple(0.5 * jax.random.normal(jax.random.key(k), (2, H)) for k in (1, 2))
    logits, last_carries = lm.apply(config, params, carries, jnp.asarray(tokens))
    log_probs, last = _numpy_lm(params, tokens, h0=carries, reset_token=0)
    np.testing.assert_allclose(jax.nn.log_softmax(logits), log_probs, atol=1e-5)
    np.testing.assert_allclose(last_carries[1], last[1], atol=1e-5)
    grads = jax.grad(lambda c: jnp.sum(lm.apply(config, params, c, jnp.asarray(tokens))[0][:, :, 0]))(carries)
    assert np.all(np.asarray(grads[0][1]) == 0) and np.any(np.asarray(grads[0][0]) != 0)  # row 1 resets at once
    with pytest.raises(ValueError, match=r"reset_token must be a token id in \[0, 7\), got 7"):
        _rnn_config(reset_token=V)


def test_tied_weights_use_the_embedding_and_dropout_only_in_training():
    config = lm.LMConfig(vocab_size=V, cell="gru", num_layers=1, hidden_size=H, tie_weights=True, dropout=0.5)
    params = lm.init_params(config, jax.random.key(0))
    assert "out_w" not in params and params["embedding"].shape == (V, H)
    tokens = jnp.zeros((2, 4), jnp.int32)
    carries = lm.init_carry(config, params, 2)
    plain, _ = lm.apply(config, params, carries, tokens)
    again, _ = lm.apply(config, params, carries, tokens)
    dropped, _ = lm.apply(config, params, carries, tokens, key=jax.random.key(1))
    np.testing.assert_array_equal(plain, again)
    assert not np.allclose(plain, dropped)
    with pytest.raises(ValueError, match="tied weights need embed_size == the top layer's output size, got 5 and 6"):
        lm.LMConfig(vocab_size=V, hidden_size=H, embed_size=E, tie_weights=True)


def test_an_lstmp_language_model_matches_a_numpy_reference_with_tied_projected_weights():
    """proj_size = 3: two LSTM layers whose hidden states are projected to 3 features, which recur and feed the
    next layer and the tied softmax (e = p = 3), against the equations by hand in float64."""
    config = lm.LMConfig(vocab_size=V, num_layers=2, hidden_size=H, proj_size=3, embed_size=3, tie_weights=True)
    params = lm.init_params(config, jax.random.key(0))
    assert params["layers"][1]["w_ih"].shape == (3, 4 * H) and params["layers"][1]["w_hh"].shape == (3, 4 * H)
    tokens = np.random.default_rng(1).integers(0, V, size=(2, 6))
    logits, _ = lm.apply(config, params, lm.init_carry(config, params, 2), jnp.asarray(tokens))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    sigmoid = lambda z: 1 / (1 + np.exp(-z))
    x = p["embedding"][tokens]
    for lp in p["layers"]:
        h, c, outputs = np.zeros((2, 3)), np.zeros((2, H)), []
        for t in range(tokens.shape[1]):
            z_i, z_f, z_g, z_o = np.split(x[:, t] @ lp["w_ih"] + lp["b"] + h @ lp["w_hh"], 4, axis=-1)
            c = sigmoid(z_f) * c + sigmoid(z_i) * np.tanh(z_g)
            h = (sigmoid(z_o) * np.tanh(c)) @ lp["w_hr"]
            outputs.append(h)
        x = np.stack(outputs, axis=1)
    np.testing.assert_allclose(logits, x @ p["embedding"].T + p["out_b"], atol=1e-5)
    with pytest.raises(ValueError, match="proj_size projects an LSTM's hidden state"):
        lm.LMConfig(vocab_size=V, cell="gru", proj_size=3)


def test_truncated_bptt_carries_the_state_and_cuts_the_gradient():
    config = _rnn_config()
    params = lm.init_params(config, jax.random.key(0))
    streams = jnp.asarray(np.random.default_rng(1).integers(0, V, size=(2, 9)))
    loss = lm_training.window_loss(config, bptt=4)
    zeros = lm.init_carry(config, params, 2)
    key = jax.random.key(0)

    _, (_, carry_after_1) = loss(params, zeros, (streams, 0, jnp.bool_(True)), key)
    _, last = _numpy_lm(params, np.asarray(streams[:, :4]))
    np.testing.assert_allclose(carry_after_1[1], last[1], atol=1e-5)  # the state handed on is window 1's last

    carried, _ = loss(params, carry_after_1, (streams, 1, jnp.bool_(False)), key)
    fresh, _ = loss(params, zeros, (streams, 1, jnp.bool_(False)), key)
    reset, _ = loss(params, carry_after_1, (streams, 1, jnp.bool_(True)), key)
    assert not np.isclose(carried, fresh)  # window 2's loss depends on window 1's state ...
    assert reset == fresh  # ... unless the epoch starts there

    log_probs, _ = _numpy_lm(params, np.asarray(streams[:, :8]))  # windows 1 and 2 as one sequence
    targets = np.asarray(streams[:, 5:9])
    by_hand = -np.mean(np.sum(log_probs[np.arange(2)[:, None], np.arange(4, 8), targets], axis=1))
    np.testing.assert_allclose(carried, by_hand, rtol=1e-5)  # sum over the window, mean over the batch

    def two_windows(params, cut):
        _, (_, carry) = loss(params, zeros, (streams, 0, jnp.bool_(True)), key)
        if not cut:  # what the carry would be without the stop_gradient inside the loss
            _, carry = lm.apply(config, params, zeros, streams[:, :4])
        return loss(params, carry, (streams, 1, jnp.bool_(False)), key)[0]

    def window_2_alone(params, carry):
        return loss(params, carry, (streams, 1, jnp.bool_(False)), key)[0]

    truncated = jax.grad(two_windows)(params, True)
    expected = jax.grad(window_2_alone)(params, carry_after_1)  # window 1's state as a constant
    full = jax.grad(two_windows)(params, False)
    for a, b in zip(jax.tree.leaves(truncated), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(truncated), strict=True))


def test_hello_trains_in_seconds_and_greedily_samples_ello(tmp_path):
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam: b ** count with an int32 count
        results = ex.run(hello.EXPERIMENT, hello.Config(), tmp_path)
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert results["steps"] == 300 and last["nll_per_token"] < 0.05
    assert results["continuation"] == "hello"


def test_sampling_is_reproducible_and_top_1_is_greedy():
    config = _rnn_config()
    params = lm.init_params(config, jax.random.key(0))
    prime = jnp.asarray([1, 2])
    draw = lambda seed, **kw: np.asarray(sample(config, params, prime, jax.random.key(seed), length=12, **kw))
    np.testing.assert_array_equal(draw(3), draw(3))
    assert not np.array_equal(draw(3), draw(4))
    np.testing.assert_array_equal(draw(3, top_k=1), draw(5, greedy=True))
    # The first greedy token is the arg max of the model's next-token distribution after the prime.
    log_probs, _ = _numpy_lm(params, np.asarray(prime)[None])
    assert draw(0, greedy=True)[0] == np.argmax(log_probs[0, -1])
    # Near-zero temperature is greedy.
    np.testing.assert_array_equal(draw(7, temperature=1e-4), draw(0, greedy=True))


def test_the_perplexity_of_a_diverged_model_is_inf_never_an_error():
    assert lm_metrics.perplexity(2.0 * 100, 100) == pytest.approx(math.exp(2.0))
    assert lm_metrics.perplexity(800.0 * 100, 100) == math.inf  # exp(800) overflows a float
