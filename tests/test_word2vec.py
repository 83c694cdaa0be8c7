"""word2vec's losses and sparse SGD against the one-hot formulation and word2vec.c's updates in NumPy."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax.data import word2vec_data as data
from seqjax.models import word2vec
from seqjax.models import word2vec_training as training

V, D = 11, 6


def random_params(seed=0):
    rng = np.random.default_rng(seed)
    return word2vec.Word2VecParams(
        jnp.asarray(rng.normal(size=(V, D)) * 0.5, jnp.float32), jnp.asarray(rng.normal(size=(V, D)) * 0.5, jnp.float32)
    )


def skipgram_batch():
    inputs = jnp.array([1, 4, 4, 7, 0], jnp.int32)
    targets = jnp.array([2, 3, 9, 2, 5], jnp.int32)
    return word2vec.Batch(inputs, targets, jnp.array([1, 1, 1, 1, 0], jnp.float32))  # the last is padding


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def word2vec_c_update(v, u, rows_of_h, h, targets, noise, lr, weights):
    """word2vec.c's negative-sampling update of one example after another, all reading the old tables.

    For each example: g = (label - σ(u_w.h)) lr for the target (label 1) and each noise word other
    than the target (label 0); u_w += g h; e += g u_w; then every input row of the example gets e.
    """
    v, u = v.copy(), u.copy()
    v0, u0 = v.copy(), u.copy()
    for p in range(len(targets)):
        if weights[p] == 0:
            continue
        e = np.zeros(D)
        words = [(targets[p], 1.0)] + [(n, 0.0) for n in noise[p] if n != targets[p]]
        for w, label in words:
            g = (label - sigmoid(u0[w] @ h[p])) * lr
            e += g * u0[w]
            u[w] += g * h[p]
        for row in rows_of_h[p]:
            v[row] += e
    del v0
    return v, u


def test_row_pick_softmax_equals_the_one_hot_formulation_in_loss_and_gradients():
    params, batch = random_params(), skipgram_batch()
    loss, grads = jax.value_and_grad(word2vec.softmax_loss)(params, batch)
    onehot_loss, onehot_grads = jax.value_and_grad(word2vec.onehot_softmax_loss)(params, batch)
    np.testing.assert_allclose(loss, onehot_loss, rtol=1e-6)
    for a, b in zip(grads, onehot_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # And both equal the cross-entropy written in NumPy.
    v, u = np.asarray(params.input, np.float64), np.asarray(params.output, np.float64)
    expected = 0.0
    for i, t, w in zip(batch.inputs, batch.targets, batch.weights, strict=True):
        scores = u @ v[i]
        expected += w * (np.log(np.exp(scores).sum()) - scores[t])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_negative_sampling_loss_matches_numpy():
    params, batch = random_params(1), skipgram_batch()
    noise = jnp.array([[3, 2, 8], [3, 5, 5], [1, 9, 0], [2, 2, 6], [4, 4, 4]], jnp.int32)
    loss = word2vec.negative_loss(params, batch, noise, negatives=3)
    v, u = np.asarray(params.input, np.float64), np.asarray(params.output, np.float64)
    expected = 0.0
    for p in range(4):  # example 5 is padding
        h, t = v[batch.inputs[p]], int(batch.targets[p])
        expected -= np.log(sigmoid(u[t] @ h))
        expected -= sum(np.log(sigmoid(-u[n] @ h)) for n in np.asarray(noise[p]) if n != t)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_skipgram_sgd_step_is_word2vec_c_update():
    params, batch = random_params(2), skipgram_batch()
    noise = jnp.array([[3, 2, 8], [3, 5, 5], [1, 9, 0], [2, 2, 6], [4, 4, 4]], jnp.int32)
    new, _ = word2vec.sgd_step(params, batch, noise, jnp.float32(0.1), negatives=3)
    v, u = np.asarray(params.input, np.float64), np.asarray(params.output, np.float64)
    h = v[np.asarray(batch.inputs)]
    rows = [[i] for i in np.asarray(batch.inputs)]
    want_v, want_u = word2vec_c_update(v, u, rows, h, np.asarray(batch.targets), np.asarray(noise), 0.1, batch.weights)
    np.testing.assert_allclose(new.input, want_v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new.output, want_u, rtol=1e-5, atol=1e-6)


def test_cbow_sgd_step_moves_every_context_word_by_the_update_of_the_mean():
    params = random_params(3)
    contexts = jnp.array([[1, 2, 3, 0], [4, 4, 5, 6]], jnp.int32)
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], np.float32)
    weights = jnp.asarray(mask / mask.sum(axis=1, keepdims=True))
    batch = word2vec.Batch(contexts, jnp.array([7, 8], jnp.int32), jnp.ones(2, jnp.float32), weights)
    noise = jnp.array([[9, 7], [10, 1]], jnp.int32)
    new, _ = word2vec.sgd_step(params, batch, noise, jnp.float32(0.05), negatives=2)
    v, u = np.asarray(params.input, np.float64), np.asarray(params.output, np.float64)
    h = np.stack([v[np.asarray(contexts[p])[mask[p] > 0]].mean(axis=0) for p in range(2)])
    rows = [np.asarray(contexts[p])[mask[p] > 0] for p in range(2)]
    want_v, want_u = word2vec_c_update(v, u, rows, h, np.array([7, 8]), np.asarray(noise), 0.05, np.ones(2))
    np.testing.assert_allclose(new.input, want_v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new.output, want_u, rtol=1e-5, atol=1e-6)


def test_shared_negatives_weight_each_noise_word_k_over_s():
    params, batch = random_params(4), skipgram_batch()
    shared = jnp.array([3, 2, 6, 9], jnp.int32)  # S = 4, K = 2: weight 1/2
    loss = word2vec.negative_loss(params, batch, shared, negatives=2)
    v, u = np.asarray(params.input, np.float64), np.asarray(params.output, np.float64)
    expected = 0.0
    for p in range(4):
        h, t = v[batch.inputs[p]], int(batch.targets[p])
        expected -= np.log(sigmoid(u[t] @ h))
        expected -= 0.5 * sum(np.log(sigmoid(-u[n] @ h)) for n in np.asarray(shared) if n != t)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    new, _ = word2vec.sgd_step(params, batch, shared, jnp.float32(0.1), negatives=2)
    grads = jax.grad(word2vec.negative_loss)(params, batch, shared, 2)
    np.testing.assert_allclose(new.input, params.input - 0.1 * grads.input, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new.output, params.output - 0.1 * grads.output, rtol=1e-5, atol=1e-6)


def test_softmax_sgd_step_is_gradient_descent_on_the_softmax_loss():
    params, batch = random_params(5), skipgram_batch()
    new, loss = word2vec.sgd_step(params, batch, None, jnp.float32(0.2))
    grads = jax.grad(word2vec.onehot_softmax_loss)(params, batch)
    np.testing.assert_allclose(loss, word2vec.onehot_softmax_loss(params, batch), rtol=1e-6)
    np.testing.assert_allclose(new.input, params.input - 0.2 * grads.input, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new.output, params.output - 0.2 * grads.output, rtol=1e-5, atol=1e-6)


def test_negatives_are_drawn_from_unigram_to_the_075():
    counts = np.array([500, 200, 100, 50, 20, 10, 5, 1])
    noise = data.noise_distribution(counts, 0.75)
    cumulative = jnp.asarray(np.cumsum(noise), jnp.float32)
    draws = word2vec.draw_negatives(jax.random.key(0), cumulative, (200_000,))
    frequencies = np.bincount(np.asarray(draws), minlength=len(counts)) / 200_000
    np.testing.assert_allclose(frequencies, noise, atol=0.004)


def clustered_corpus(seed=0, sentences=600):
    """Sentences drawn from one of two disjoint 10-word topics: words co-occur only within a topic."""
    rng = np.random.default_rng(seed)
    text = []
    for _ in range(sentences):
        topic = rng.integers(2)
        text.append([f"{'ab'[topic]}{i}" for i in rng.integers(10, size=8)])
    return text


@pytest.mark.parametrize("model", ["skipgram", "cbow"])
def test_training_separates_topics_and_resumes_exactly(model):
    sentences = clustered_corpus()
    vocab = data.build_vocab(sentences, min_count=1)
    corpus = data.encode(sentences, vocab)
    config = training.TrainConfig(model=model, epochs=3, batch_size=64, chunk_batches=8, sample=0, alpha=0.05)

    snapshots = {}

    def keep(stats, params, opt_state):  # params are donated to the next step: copy them out
        snapshots[stats.epoch] = jax.tree.map(np.array, params)

    params = word2vec.init_params(jax.random.key(0), len(vocab), 16)
    params, stats = training.train(params, corpus, vocab, config, jax.random.key(1), on_epoch=keep)
    assert stats[-1].mean_loss < stats[0].mean_loss
    unit = np.asarray(params.input) / np.linalg.norm(params.input, axis=1, keepdims=True)
    topic = np.array([w[0] == "a" for w in vocab.words])
    cosine = unit @ unit.T
    same = cosine[topic[:, None] == topic[None, :]].mean()
    across = cosine[topic[:, None] != topic[None, :]].mean()
    assert same > across + 0.3, (same, across)
    # Resumed after epoch 2, the run ends where the uninterrupted one did.
    resumed = jax.tree.map(jnp.asarray, snapshots[2])
    resumed, _ = training.train(resumed, corpus, vocab, config, jax.random.key(1), start_epoch=2)
    np.testing.assert_array_equal(params.input, resumed.input)
    np.testing.assert_array_equal(params.output, resumed.output)


def test_optax_sgd_on_the_dense_gradient_equals_the_sparse_update_and_adam_learns():
    sentences = clustered_corpus(sentences=100)
    vocab = data.build_vocab(sentences, min_count=1)
    corpus = data.encode(sentences, vocab)
    base = training.TrainConfig(epochs=1, batch_size=32, chunk_batches=4, sample=0)
    start = word2vec.init_params(jax.random.key(0), len(vocab), 8)
    start = start._replace(output=start.input[::-1] * 2)  # nonzero output vectors: every term moves
    runs = {}
    for optimizer in ("sparse_sgd", "sgd"):
        config = dataclasses.replace(base, optimizer=optimizer)
        runs[optimizer], _ = training.train(jax.tree.map(jnp.copy, start), corpus, vocab, config, jax.random.key(1))
    np.testing.assert_allclose(runs["sgd"].input, runs["sparse_sgd"].input, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(runs["sgd"].output, runs["sparse_sgd"].output, rtol=1e-4, atol=1e-6)
    assert not np.allclose(runs["sgd"].input, start.input)
    adam = dataclasses.replace(base, optimizer="adam", alpha=0.01, epochs=2)
    _, stats = training.train(jax.tree.map(jnp.copy, start), corpus, vocab, adam, jax.random.key(1))
    assert stats[1].mean_loss < stats[0].mean_loss


def test_a_non_finite_row_no_update_reads_stops_training_at_the_end_of_its_epoch():
    sentences = [["a", "b", "a", "b"]] * 20 + [["z"]]  # z alone in its sentence: never an input nor a target
    vocab = data.build_vocab(sentences, min_count=1)
    corpus = data.encode(sentences, vocab)
    config = training.TrainConfig(epochs=2, batch_size=8, chunk_batches=4, sample=0)
    params = word2vec.init_params(jax.random.key(0), len(vocab), 4)
    params = params._replace(input=params.input.at[vocab.id("z")].set(jnp.nan))
    seen = []
    with pytest.raises(training.NonFiniteUpdate, match=r"^epoch 1 left a non-finite parameter") as stopped:
        training.train(params, corpus, vocab, config, jax.random.key(1), on_epoch=lambda *epoch: seen.append(epoch))
    assert (stopped.value.epoch, stopped.value.update, seen) == (1, 0, [])
