"""Image captioning (one-to-many): the composed digit data, the CNN -> RNN captioner, the metrics, the experiment."""

import json

import captioning
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from refusals import refusal
from sklearn.datasets import load_digits

import seqjax
from seqjax import config
from seqjax import experiment as ex
from seqjax.data import digit_captions as data_lib
from seqjax.data.text import DataError
from seqjax.models import captioner

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TOKENS = ["<pad>", "<bos>", "<eos>", *NAMES]


# -- the data -----------------------------------------------------------------------------------------------------


def expected_caption(labels):
    return [TOKENS.index(NAMES[label]) for label in labels] + [TOKENS.index("<eos>")]


def test_images_are_source_digits_side_by_side_captioned_by_their_names():
    digits = load_digits()
    data = data_lib.make_data(seed=3, train_size=40, dev_size=10, test_size=30, digits_per_image=3)
    assert data_lib.VOCAB.tokens == tuple(TOKENS)
    for split in (data.train, data.dev, data.test):
        assert split.images.shape[1:] == (8, 24) and split.images.dtype == np.float32
        assert split.captions.shape[1] == 4 and split.lengths.tolist() == [4] * len(split)
        for i in range(len(split)):
            np.testing.assert_allclose(split.images[i], np.hstack([digits.images[s] for s in split.sources[i]]) / 16)
            assert split.captions[i].tolist() == expected_caption(digits.target[split.sources[i]])
    assert data_lib.caption_words(data.test.captions[0]) == [NAMES[d] for d in digits.target[data.test.sources[0]]]

    variable = data_lib.make_data(seed=3, train_size=200, dev_size=5, test_size=5, digits_per_image=4, min_digits=1)
    split = variable.train
    assert split.images.shape[1:] == (8, 32) and sorted(set(split.lengths.tolist())) == [2, 3, 4, 5]
    for i in range(20):
        n = int(split.lengths[i]) - 1
        present = split.sources[i, :n]
        assert (split.sources[i, n:] == -1).all() and (present >= 0).all()
        blank = np.zeros((8, 8 * (4 - n)))
        np.testing.assert_allclose(split.images[i], np.hstack([*(digits.images[s] / 16 for s in present), blank]))
        assert split.captions[i].tolist() == expected_caption(digits.target[present]) + [0] * (4 - n)


def test_pools_are_disjoint_stratified_and_each_split_draws_from_its_own():
    labels = load_digits().target
    data = data_lib.make_data(seed=1, train_size=300, dev_size=100, test_size=100)
    pools = data.pools
    assert sum(len(p) for p in pools.values()) == 1797
    assert np.array_equal(np.sort(np.concatenate(list(pools.values()))), np.arange(1797))  # disjoint, covering
    for name in ("train", "dev", "test"):
        assert set(getattr(data, name).sources.ravel().tolist()) <= set(pools[name].tolist())
        assert sorted(set(labels[pools[name]].tolist())) == list(range(10))  # every digit in every pool
    # stratified: each digit's share of the test pool is 20% of its images, to rounding
    for digit in range(10):
        assert abs(np.sum(labels[pools["test"]] == digit) - 0.2 * np.sum(labels == digit)) <= 0.5


def test_same_seed_same_arrays_other_seed_other_arrays():
    a, b = (data_lib.make_data(seed=5, train_size=30, dev_size=8, test_size=8, min_digits=1) for _ in range(2))
    c = data_lib.make_data(seed=6, train_size=30, dev_size=8, test_size=8, min_digits=1)
    for name in ("train", "dev", "test"):
        for x, y in zip(getattr(a, name), getattr(b, name), strict=True):
            np.testing.assert_array_equal(x, y)
        assert not np.array_equal(getattr(a, name).sources, getattr(c, name).sources)
    with pytest.raises(DataError, match="min_digits"):
        data_lib.make_data(seed=0, train_size=4, dev_size=4, test_size=4, digits_per_image=2, min_digits=3)
    with pytest.raises(DataError, match="--dev_size must be >= 1"):
        data_lib.make_data(seed=0, train_size=4, dev_size=0, test_size=4)


# -- the model ----------------------------------------------------------------------------------------------------


def counting_init(key, input_size, hidden_size, dtype=jnp.float32):
    return {"w": jax.random.normal(key, (input_size + hidden_size, hidden_size), dtype) / 4}


def counting_step(params, carry, x):
    h, count = carry
    h = jnp.tanh(jnp.concatenate([x, h], axis=-1) @ params["w"])
    return (h, count + 1), h * count[:, None]


# A user cell whose carry has a [b, h] leaf and a [b] counter: only the first is set from the image.
COUNTING = seqjax.Cell(
    counting_init,
    counting_step,
    init_carry=lambda p, shape: (jnp.zeros((*shape, p["w"].shape[1])), jnp.ones(shape)),
    name="counting",
)


def tiny_model(cell="lstm"):
    """The model of the experiment test's ``TINY`` (for LSTMs): compiled once for both."""
    return captioner.CaptionerConfig(vocab_size=13, image_width=24, cell=cell, hidden_size=12, embed_size=6,
                                     conv_features=(3, 4), image_features=10, embed_scale=1.0)  # fmt: skip


def random_batch(b=20, t=4, seed=0):
    """Images ``[b, 8, 24]``, captions ``[b, t]`` ending in ``<eos>`` at ``lengths - 1`` then random words."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(b, 8, 24)).astype(np.float32)
    captions = rng.integers(3, 13, size=(b, t)).astype(np.int32)
    lengths = rng.integers(1, t + 1, size=b).astype(np.int32)
    lengths[0] = t
    captions[np.arange(b), lengths - 1] = 2
    return images, captions, lengths


def numpy_encoder(p, images):
    """3 x 3 'SAME' convolutions, relu, 2 x 2 max-pools, flatten (h, w, c), dense, relu, in NumPy."""
    x = np.asarray(images, np.float64)[..., None]
    for name in ("Conv_0", "Conv_1"):
        kernel, bias = np.asarray(p[name]["kernel"], np.float64), np.asarray(p[name]["bias"], np.float64)
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        height, width = x.shape[1:3]
        y = np.zeros((*x.shape[:3], kernel.shape[-1])) + bias
        for i in range(3):
            for j in range(3):
                y += padded[:, i : i + height, j : j + width] @ kernel[i, j]
        y = np.maximum(y, 0)
        x = y.reshape(y.shape[0], height // 2, 2, width // 2, 2, y.shape[-1]).max(axis=(2, 4))
    flat = x.reshape(x.shape[0], -1)
    return np.maximum(flat @ np.asarray(p["Dense_0"]["kernel"]) + np.asarray(p["Dense_0"]["bias"]), 0)


def test_teacher_forced_logits_equal_a_python_loop_over_the_cell(key):
    model = tiny_model()
    params = captioner.init_params(model, key)
    images, captions, lengths = random_batch()
    logits = np.asarray(captioner.predict(model, params, *map(jnp.asarray, (images, captions, lengths))))

    v = numpy_encoder(params["encoder"], images)  # [20, 10]: the logits below check the encoder too
    hidden, cell = (np.tanh(v @ np.asarray(m["w"]) + np.asarray(m["b"])) for m in params["init"])
    carry = seqjax.LSTMCarry(jnp.asarray(hidden, jnp.float32), jnp.asarray(cell, jnp.float32))
    lstm = captioner.captioner_cell(model)
    step = jax.jit(lambda carry, x: seqjax.cells.step_input(lstm, params["cell"], carry, x))
    previous = np.full(20, 1)  # <bos>
    for s in range(4):
        carry, y = step(carry, params["embedding"][previous])
        expected = np.asarray(y) @ np.asarray(params["out_w"]) + np.asarray(params["out_b"])
        real = s < lengths
        np.testing.assert_allclose(logits[real, s], expected[real], rtol=1e-4, atol=1e-5)
        previous = captions[:, s]


def test_a_user_cell_gets_its_state_leaves_from_the_image(key):
    model = tiny_model(COUNTING)
    shapes = jax.eval_shape(captioner.init_params, model, key)  # traced, not compiled
    assert jax.tree.map(lambda a: a.shape, shapes["init"]) == ({"w": (10, 12), "b": (12,)},)  # h only
    rng = np.random.default_rng(0)
    params = {"cell": counting_init(key, 6, 12), "init": ({"w": rng.normal(size=(10, 12)), "b": rng.normal(size=12)},)}
    params["init"] = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params["init"])
    v = rng.normal(size=(3, 10)).astype(np.float32)
    h, count = captioner.initial_carry(model, params, jnp.asarray(v))
    m = params["init"][0]
    np.testing.assert_allclose(h, np.tanh(v @ np.asarray(m["w"]) + np.asarray(m["b"])), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(count, np.ones(3))  # not a [b, h] leaf: init_carry's value


def test_the_image_decides_the_caption_and_padding_and_batch_mates_do_not(key):
    model = tiny_model()
    params = captioner.init_params(model, key)

    def logits(images, captions, lengths):
        return np.asarray(captioner.predict(model, params, *map(jnp.asarray, (images, captions, lengths))))

    images, captions, lengths = random_batch(seed=1)
    reference = logits(images, captions, lengths)
    caption = [7, 4, 2]
    # example 1 gets example 0's image and a caption of 3 tokens padded with random words; batch mates change
    images[1], captions[1], lengths[1] = images[0], [*caption, 9], 3
    first = logits(images, captions, lengths)
    mates = random_batch(seed=2)
    images2, captions2, lengths2 = (a.copy() for a in mates)
    images2[5], captions2[5], lengths2[5] = images[0], [*caption, 2], 3
    second = logits(images2, captions2, lengths2)
    np.testing.assert_allclose(second[5, :3], first[1, :3], rtol=0, atol=1e-5)
    # another image, the same words: other logits at every position, the first included
    other = images.copy()
    other[1, :, :8] = images[2, :, :8]
    changed = logits(other, captions, lengths)
    assert np.abs(changed[1, :3] - first[1, :3]).max(axis=-1).min() > 1e-4
    np.testing.assert_allclose(np.delete(changed, 1, axis=0), np.delete(first, 1, axis=0), rtol=0, atol=1e-6)
    assert np.abs(first[0] - reference[0]).max() < 1e-6  # (the batch really changed only where it was edited)

    # the loss: mean cross-entropy over the real tokens only, by hand
    z = np.asarray(first, np.float64)
    nll = [np.log(np.sum(np.exp(z[b, s]))) - z[b, s, captions[b, s]] for b in range(20) for s in range(lengths[b])]
    garbage = first.copy()
    garbage[np.arange(4)[None, :] >= lengths[:, None]] = 1e4  # the padding's logits: must not count
    for x in (first, garbage):
        loss = captioner.loss(jnp.asarray(x), jnp.asarray(captions), jnp.asarray(lengths))
        np.testing.assert_allclose(loss, np.mean(nll), rtol=1e-5)


def greedy_by_hand(model, params, images, max_len):
    """The teacher-forced model run on its own growing prefix, one position at a time, in NumPy."""
    b = len(images)
    tokens, score = np.zeros((b, max_len), np.int32), np.zeros(b)
    lengths, done = np.full(b, max_len), np.zeros(b, bool)
    for s in range(max_len):
        z = captioner.predict(
            model, params, jnp.asarray(images), jnp.asarray(tokens), jnp.full((b,), max_len, jnp.int32)
        )
        z = np.asarray(z, np.float64)[:, s]
        log_probs = z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
        tokens[:, s] = np.where(done, 0, np.argmax(z, axis=-1))  # <pad> after <eos>
        score += np.where(done, 0, log_probs[np.arange(b), tokens[:, s]])
        lengths = np.where(~done & (tokens[:, s] == 2), s + 1, lengths)
        done |= tokens[:, s] == 2
    return tokens, lengths, score


def test_greedy_decoding_feeds_back_its_own_argmax(key):
    model = tiny_model()
    params = captioner.init_params(model, key)
    images, _, _ = random_batch(seed=3)
    no_words = jnp.zeros((20, 4), jnp.int32)
    first = np.asarray(captioner.predict(model, params, jnp.asarray(images), no_words, jnp.full((20,), 4, jnp.int32)))
    margin = np.max(first[:, 0], axis=-1) - first[:, 0, 2]
    # captions that end at once, later and never (length 4); then none ends
    for eos_bias, kinds in ((np.quantile(margin, 0.3), {1, 2, 4}), (-1e3, {4})):
        biased = dict(params, out_b=params["out_b"].at[2].add(eos_bias))
        tokens, lengths, score = greedy_by_hand(model, biased, images, 4)
        decoded = captioner.decode(model, biased, jnp.asarray(images), 4)
        assert set(lengths.tolist()) == kinds, lengths
        np.testing.assert_array_equal(decoded.tokens, tokens)
        np.testing.assert_array_equal(decoded.lengths, lengths)
        np.testing.assert_allclose(decoded.score, score, rtol=1e-5)


# -- the metrics --------------------------------------------------------------------------------------------------


def test_exact_and_per_word_accuracy_on_hand_built_predictions():
    captions = np.array([[3, 4, 2, 0], [5, 2, 0, 0], [6, 7, 8, 2], [3, 3, 3, 2], [9, 9, 2, 0]])
    caption_lengths = np.array([3, 2, 4, 4, 3])
    tokens = np.array([
        [3, 4, 2, 2],  # exact; words 2 of 2
        [5, 9, 2, 2],  # too long; words 1 of 1
        [6, 2, 2, 2],  # ended early; words 1 of 3
        [3, 2, 3, 3],  # ended after one word: the tokens after <eos> do not count; 1 of 3
        [9, 9, 9, 9],  # no <eos> (length 4): not exact, words 2 of 2
    ])  # fmt: skip
    lengths = np.array([3, 3, 2, 2, 4])
    metrics = captioner.caption_metrics(tokens, lengths, captions, caption_lengths)
    assert metrics["exact"] == pytest.approx(1 / 5)
    assert metrics["word_accuracy"] == pytest.approx((2 + 1 + 1 + 1 + 2) / (2 + 1 + 3 + 3 + 2))
    # decoded captions shorter than the true ones' padded width
    short = captioner.caption_metrics(tokens[:, :2], np.array([2, 2, 2, 2, 2]), captions, caption_lengths)
    assert short == {"exact": 0.0, "word_accuracy": pytest.approx((2 + 1 + 1 + 1 + 2) / 11)}


# -- the experiment -----------------------------------------------------------------------------------------------

TINY = dict(train_size=64, dev_size=20, test_size=20, conv1=3, conv2=4, image_features=10, embed=6, hidden=12,
            embed_scale=1.0, batch_size=16, learning_rate=0.01, eval_batch_size=20, figure_examples=4, log_every=2,
            checkpoint_every=1000)  # fmt: skip


def test_runs_end_to_end_and_a_rerun_resumes_exactly(tmp_path):
    straight = captioning.Config(epochs=3, **TINY)
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam: b ** count with an int32 count
        expected = ex.run(captioning.EXPERIMENT, straight, tmp_path / "straight")
        first = captioning.Config(epochs=2, **TINY)
        out = tmp_path / "run"
        partial = ex.run(captioning.EXPERIMENT, first, out)
        resumed = ex.run(captioning.EXPERIMENT, config.replace(first, epochs=3), out)
    assert partial["steps"] == 8 and [h["step"] for h in partial["history"]] == [4, 8]
    assert resumed["steps"] == 12 and [h["step"] for h in resumed["history"]] == [4, 8, 12]
    for name in ("dev_exact", "dev_word_accuracy", "test", "best"):
        assert resumed[name] == expected[name], name
    assert resumed["history"][:2] == partial["history"]
    best = int(np.argmax(resumed["dev_exact"]))  # the earliest best
    assert resumed["best"]["step"] == resumed["history"][best]["step"] == resumed["test"]["step"]
    assert 0 <= resumed["test"]["exact"] <= resumed["test"]["word_accuracy"] <= 1
    assert json.loads((out / "results.json").read_text()) == resumed
    assert json.loads((out / "vocab.json").read_text())["tokens"] == TOKENS
    assert (out / "test_captions.png").stat().st_size > 1000 and len(resumed["test_examples"]) == 4
    assert (out / "eval" / "metrics.jsonl").read_text().count("\n") == 3 and (out / "best" / "checkpoints").is_dir()


def test_inconsistent_digit_counts_are_refused_in_one_line(tmp_path):
    out = tmp_path / "run"
    assert "--min_digits must be at most --digits_per_image" in refusal(
        captioning, f"--workdir={out}", "--min_digits=4"
    )
    assert not out.exists()
