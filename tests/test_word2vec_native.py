"""The native word2vec update (``seqjax/native/word2vec_sgd.cc`` through ``jax.ffi``) against independent references:
word2vec.c's update written again in NumPy, the pure-JAX path's trained vectors; the noise table against binary
search; the rule that picks the path; the fallback where no compiler is found."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_word2vec import V, clustered_corpus, random_params, sigmoid, word2vec_c_update

from seqjax.data import word2vec_data as data
from seqjax.models import word2vec, word2vec_native
from seqjax.models import word2vec_training as training
from seqjax.native import build

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def native():
    try:
        word2vec_native.load()
    except word2vec_native.NativeUnavailable as e:
        pytest.skip(f"the native kernel cannot be built here: {e}")


@pytest.mark.parametrize(
    "counts",
    [
        np.arange(1, 2001)[::-1] ** 2,  # Zipf-like: a few heavy words, many light ones
        np.array([1e-9, 5.0, 1e-9, 1e-9, 3.0, 1e-9, 1e-9, 1e-9, 2.0]),  # boundaries crowded into one slice
    ],
)
def test_the_noise_table_gives_exactly_the_ids_of_binary_search(counts):
    noise = data.noise_distribution(counts)
    table = word2vec.noise_table(noise)
    cumulative = jnp.asarray(np.cumsum(noise), jnp.float32)
    np.testing.assert_array_equal(table.cumulative, cumulative)
    total = np.float32(cumulative[-1])
    edges = np.asarray(cumulative)
    points = np.concatenate([
        np.random.default_rng(0).uniform(0, total, 200_000).astype(np.float32),
        edges, np.nextafter(edges, np.float32(0)), np.nextafter(edges, np.float32(2 * total)),  # on and beside
        np.array([0, total], np.float32),
    ])  # fmt: skip
    points = np.clip(points, 0, total)
    want = np.minimum(np.searchsorted(edges, points, side="right"), len(edges) - 1)
    np.testing.assert_array_equal(word2vec.noise_ids(jnp.asarray(points), table), want)
    np.testing.assert_array_equal(word2vec.noise_ids(jnp.asarray(points), cumulative), want)
    key = jax.random.key(3)
    np.testing.assert_array_equal(
        word2vec.draw_negatives(key, table, (4096, 5)), word2vec.draw_negatives(key, cumulative, (4096, 5))
    )


def numpy_loss(v, u, h, targets, noise, weights):
    """Σ_p w_p (-log σ(u_t.h) - Σ_{k: n_k != t} log σ(-u_{n_k}.h)), in float64."""
    loss = 0.0
    for p in range(len(targets)):
        if weights[p] == 0:
            continue
        loss -= np.log(sigmoid(u[targets[p]] @ h[p]))
        loss -= sum(np.log(sigmoid(-u[n] @ h[p])) for n in noise[p] if n != targets[p])
    return loss


def two_batches(model):
    """Two batches (N = 2, P = 5) with repeated rows and a padding example."""
    if model == "skipgram":
        inputs = np.array([[1, 4, 4, 7, 0], [4, 2, 9, 1, 3]], np.int32)
        context_weights = None
    else:
        inputs = np.array([[[1, 2, 3, 0], [4, 4, 5, 6], [7, 1, 0, 0], [2, 3, 4, 5], [8, 0, 0, 0]]] * 2, np.int32)
        inputs[1] = inputs[1][::-1]
        mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], np.float32)
        context_weights = np.stack([mask / mask.sum(axis=1, keepdims=True)] * 2)
    targets = np.array([[2, 3, 9, 2, 5], [3, 3, 0, 8, 10]], np.int32)
    weights = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], np.float32)
    return word2vec.Batch(inputs, targets, weights, context_weights)


def test_the_kernel_draws_the_noise_ids_jax_random_draws(native):
    counts = np.arange(1, 3001)[::-1] ** 1.5
    table = word2vec.noise_table(data.noise_distribution(counts))
    cumulative = jnp.asarray(np.cumsum(data.noise_distribution(counts)), jnp.float32)
    key = jax.random.key(11)
    first_step = 2**20 + 5  # as an epoch's steps are numbered
    ids = word2vec_native.noise_chunk(key, table, first_step, (3, 1000, 7))
    for i in range(3):
        fold = jax.random.fold_in(key, jnp.int32(first_step) + i)
        np.testing.assert_array_equal(ids[i], word2vec.draw_negatives(fold, cumulative, (1000, 7)))


@pytest.mark.parametrize("model", ["skipgram", "cbow"])
def test_a_native_chunk_is_word2vec_c_update_batch_after_batch(native, model):
    params, batch, negatives = random_params(7), two_batches(model), 3
    table = word2vec.noise_table(data.noise_distribution(np.arange(1, V + 1)))
    key, first_step = jax.random.key(5), 100
    noise = np.stack([word2vec.draw_negatives(jax.random.fold_in(key, first_step + i), table, (5, 3)) for i in (0, 1)])
    assert (noise == batch.targets[..., None]).any()  # a noise word equal to its target, skipped
    lrs = np.array([0.1, 0.05], np.float32)
    chunk = lambda p, valid, nonfinite, threads: word2vec_native.sgd_chunk(
        p, batch, key, table, negatives, lrs, valid, first_step, nonfinite, threads
    )
    new, loss_sum, nonfinite = jax.jit(chunk, static_argnums=3)(params, 2, -1, 2)
    v, u = np.asarray(params.input, np.float64), np.asarray(params.output, np.float64)
    want_loss = 0.0
    for i in range(2):
        ids = batch.inputs[i]
        if model == "skipgram":
            h, rows = v[ids], [[r] for r in ids]
        else:
            used = batch.context_weights[i] > 0
            h = np.stack([v[ids[p][used[p]]].mean(axis=0) for p in range(5)])
            rows = [ids[p][used[p]] for p in range(5)]
        want_loss += numpy_loss(v, u, h, batch.targets[i], noise[i], batch.weights[i])
        v, u = word2vec_c_update(v, u, rows, h, batch.targets[i], noise[i], lrs[i], batch.weights[i])
    np.testing.assert_allclose(new.input, v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new.output, u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss_sum, want_loss, rtol=1e-5)
    assert int(nonfinite) == -1
    # Only `valid` batches run, and none once an earlier chunk met a non-finite loss.
    one, _, _ = chunk(params, 1, -1, 1)
    first_only, _ = word2vec.sgd_step(params, jax.tree.map(lambda a: a[0], batch), noise[0], lrs[0], negatives)
    np.testing.assert_allclose(one.input, first_only.input, rtol=1e-5, atol=1e-6)
    untouched, loss, stopped = chunk(params, 2, 7, 1)
    np.testing.assert_array_equal(untouched.input, params.input)
    assert (float(loss), int(stopped)) == (0.0, 7)


@pytest.mark.parametrize("model", ["skipgram", "cbow"])
def test_native_and_pure_jax_updates_train_the_same_vectors(native, model):
    sentences = clustered_corpus(sentences=300)
    vocab = data.build_vocab(sentences, min_count=1)
    corpus = data.encode(sentences, vocab)
    base = training.TrainConfig(model=model, epochs=2, batch_size=64, chunk_batches=8, sample=0, alpha=0.05)
    runs = {}
    for kernel, threads in (("jax", 0), ("native", 1), ("native", 3)):
        config = dataclasses.replace(base, kernel=kernel, threads=threads)
        params = word2vec.init_params(jax.random.key(0), len(vocab), 16)
        runs[kernel, threads], stats = training.train(params, corpus, vocab, config, jax.random.key(1))
        runs[kernel, threads, "loss"] = [s.mean_loss for s in stats]
    pure, single, three = runs["jax", 0], runs["native", 1], runs["native", 3]
    # The same update up to the order of float sums: a few ulps per step, 1e-5 after 2 epochs of 70 steps.
    np.testing.assert_allclose(single.input, pure.input, atol=2e-5)
    np.testing.assert_allclose(single.output, pure.output, atol=2e-5)
    np.testing.assert_allclose(runs["native", 1, "loss"], runs["jax", 0, "loss"], rtol=1e-5)
    assert not np.array_equal(pure.input, word2vec.init_params(jax.random.key(0), len(vocab), 16).input)
    # Each row's updates are added in the same order however many threads share the batch.
    np.testing.assert_array_equal(three.input, single.input)
    np.testing.assert_array_equal(three.output, single.output)


@pytest.mark.parametrize("kernel", ["jax", "native"])
def test_a_diverging_run_stops_at_the_same_update_on_either_path(native, kernel):
    sentences = clustered_corpus(sentences=100)
    vocab = data.build_vocab(sentences, min_count=1)
    corpus = data.encode(sentences, vocab)
    config = training.TrainConfig(epochs=1, batch_size=16, chunk_batches=4, sample=0, alpha=1e38, kernel=kernel)
    params = word2vec.init_params(jax.random.key(0), len(vocab), 8)
    with pytest.raises(training.NonFiniteUpdate) as stopped:
        training.train(params, corpus, vocab, config, jax.random.key(1))
    assert (stopped.value.epoch, stopped.value.update) == (1, 3)


def test_the_rule_names_the_path_and_training_takes_it(native, monkeypatch):
    auto = training.TrainConfig(batch_size=8, chunk_batches=2)
    assert training.update_path(auto) == "native"
    assert training.update_path(dataclasses.replace(auto, kernel="jax")) == "jax"
    for other in ({"loss": "softmax"}, {"shared_negatives": 4}, {"optimizer": "adam"}):
        assert training.update_path(dataclasses.replace(auto, **other)) == "jax"
        with pytest.raises(ValueError, match=r"^--kernel=native: the native word2vec update does not apply here"):
            training.update_path(dataclasses.replace(auto, kernel="native", **other))
    calls = []
    real = word2vec_native.sgd_chunk
    monkeypatch.setattr(word2vec_native, "sgd_chunk", lambda *a, **k: calls.append(1) or real(*a, **k))
    sentences = clustered_corpus(sentences=20)
    vocab = data.build_vocab(sentences, min_count=1)
    corpus = data.encode(sentences, vocab)
    for kernel, traced in (("auto", True), ("jax", False)):
        calls.clear()
        params = word2vec.init_params(jax.random.key(0), len(vocab), 4)
        training.train(params, corpus, vocab, dataclasses.replace(auto, epochs=1, kernel=kernel), jax.random.key(1))
        assert bool(calls) == traced, kernel
    step = training.make_chunk_step(auto, np.full(len(vocab), 1 / len(vocab)), "native")
    batch, _, _ = next(
        training.chunks(training.epoch_examples(corpus, np.ones(len(vocab)), auto, np.random.default_rng(0))[0], auto)
    )
    lowered = step.lower(params, (), jax.random.key(1), batch, 1, 0, np.float32(0.1), np.float32(0), jnp.int32(-1))
    assert word2vec_native.TARGET in lowered.as_text()


def test_the_kernel_takes_the_threads_asked_for_else_the_cores_at_most_eight(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert training.kernel_threads(training.TrainConfig()) == 8
    assert training.kernel_threads(training.TrainConfig(threads=3)) == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert training.kernel_threads(training.TrainConfig()) == 2


def test_without_a_compiler_the_kernel_is_one_line_and_auto_falls_back_with_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    monkeypatch.setenv("SEQJAX_NATIVE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(build.NativeUnavailable, match=r"^\$CXX=/nonexistent/c\+\+ was not found \(install g\+\+"):
        build.load_library("word2vec_sgd")
    assert not (tmp_path / "cache").exists()

    def unavailable():
        raise word2vec_native.NativeUnavailable("no C++ compiler found (install g++ or clang++, or set CXX)")

    monkeypatch.setattr(word2vec_native, "load", unavailable)
    monkeypatch.setattr(training, "_NOTICES", set())
    auto = training.TrainConfig()
    assert [training.update_path(auto), training.update_path(auto)] == ["jax", "jax"]
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "word2vec: using the pure-JAX update (slower): the native kernel cannot be built: no C++ compiler found "
        "(install g++ or clang++, or set CXX)"
    ]
    with pytest.raises(ValueError, match=r"^--kernel=native: the native word2vec update cannot be built: no C\+\+"):
        training.update_path(dataclasses.replace(auto, kernel="native"))


def test_a_machine_without_a_compiler_still_trains_and_says_so_in_one_line(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(s) for s in clustered_corpus(sentences=50)) + "\n")
    env = {**os.environ, "CXX": "/nonexistent/c++", "SEQJAX_NATIVE_CACHE": str(tmp_path / "cache")}
    flags = [f"--corpus={corpus}", "--min_count=1", "--dim=4", "--epochs=1", f"--eval_dir={tmp_path / 'none'}"]
    script = [sys.executable, str(ROOT / "experiments/word2vec.py"), *flags]
    proc = subprocess.run(
        [*script, f"--workdir={tmp_path / 'run'}"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    notices = [line for line in proc.stderr.splitlines() if "pure-JAX" in line]
    assert notices == [
        "word2vec: using the pure-JAX update (slower): the native kernel cannot be built: $CXX=/nonexistent/c++ was "
        "not found (install g++ or clang++, or set CXX)"
    ]
    assert (tmp_path / "run" / "vectors.bin").is_file()
    native = [*script, "--kernel=native", f"--workdir={tmp_path / 'run2'}"]
    refused = subprocess.run(native, capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "--kernel=native: the native word2vec update cannot be built: $CXX=/nonexistent/c++" in refused.stderr
    assert not (tmp_path / "run2").exists()
