"""The minimal-LRU copy task: its layout against the reference's definition written again in NumPy, the deep LRU
network against its equations in NumPy with the same weights, the two-group optimizer, and
experiments/lru_copy.py end to end with tiny settings (learns, writes, resumes, refuses a bad flag)."""

import json

import jax
import jax.numpy as jnp
import lru_copy
import numpy as np
import pytest

from seqjax import config as config_lib
from seqjax import experiment as ex
from seqjax.data import bit_copy
from seqjax.models import lru_optimizer, lru_stack


@pytest.fixture(autouse=True)
def _standard_promotion():
    """optax's Adam (b ** count with an int32 count) needs standard dtype promotion."""
    with jax.numpy_dtype_promotion("standard"):
        yield


# ------------------------------------------------------------------------------------------------------ the task


def reference_copy_task(pattern, pattern_length, pad_length, in_dim):
    """The reference's ``CopyTask.setup`` and ``create_mask`` in NumPy: inputs, outputs and the mask."""
    n = pattern.shape[0]
    seq_length_in = pattern_length * 2 + pad_length + 1
    input_data = np.zeros((n, seq_length_in, in_dim))
    output_data = np.zeros((n, seq_length_in, in_dim - 1))
    input_data[:, :pattern_length, :-1] = pattern
    output_data[:, seq_length_in - pattern_length :, :] = pattern
    input_data[:, pattern_length + pad_length, -1] = 1
    lengths = np.array([seq_length_in - pattern_length, seq_length_in])
    steps = np.arange(seq_length_in)
    mask = (steps >= lengths[0]) * (steps < lengths[1])
    return input_data, output_data, np.broadcast_to(mask, (n, seq_length_in))


@pytest.mark.parametrize(("pattern_length", "pad_length", "bits"), [(20, 7, 7), (3, 0, 2)])
def test_the_layout_is_the_reference_copy_task(pattern_length, pad_length, bits):
    pattern = bit_copy.patterns(jax.random.key(0), 5, pattern_length, bits)
    batch = bit_copy.sequences(pattern, pad_length)
    inputs, outputs, mask = reference_copy_task(pattern, pattern_length, pad_length, bits + 1)
    np.testing.assert_array_equal(batch.inputs, inputs)
    np.testing.assert_array_equal(batch.targets, outputs)
    np.testing.assert_array_equal(batch.mask, mask)
    assert batch.inputs.dtype == np.float32 and batch.targets.dtype == np.int32 and batch.mask.dtype == np.float32


def test_the_defaults_and_the_patterns():
    assert bit_copy.sequence_length() == 48  # 20 pattern steps, 7 blanks, the stop token at step 27, 20 to recall
    batch = bit_copy.sequences(bit_copy.patterns(jax.random.key(1), 2))
    assert np.flatnonzero(batch.inputs[0, :, -1]).tolist() == [27]
    assert np.flatnonzero(batch.mask[0]).tolist() == list(range(28, 48))
    many = bit_copy.patterns(jax.random.key(2), 2000)
    assert set(np.unique(many)) == {0, 1} and abs(many.mean() - 0.5) < 0.01
    first, again = (bit_copy.splits(jax.random.key(3), (8, 4, 4)) for _ in range(2))
    for split in bit_copy.SPLITS:
        np.testing.assert_array_equal(first[split], again[split])  # a function of the key
    assert not np.array_equal(first["val"], first["test"])


# ------------------------------------------------------------------------------------------------------ the model

TINY = lru_stack.LRUStackConfig(input_size=3, output_size=4, d_model=6, state_size=5, num_layers=2, dropout=0.1)


def _numpy(params):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), params)


def numpy_network(model, params, xs):
    """The module docstring's equations in float64 / complex128, one step at a time, no dropout."""
    p = _numpy(params)

    def dense(q, v):
        return v @ q["kernel"] + q["bias"]

    def norm(q, v):
        if model.norm == "none":
            return v
        centred = v - v.mean(-1, keepdims=True)
        return centred / np.sqrt((centred**2).mean(-1, keepdims=True) + 1e-6) * q["scale"] + q["bias"]

    def gelu(v):
        return 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3)))

    def lru(q, u):
        lam = np.exp(-np.exp(q["nu_log"]) + 1j * np.exp(q["theta_log"]))
        b, c = q["b_re"] + 1j * q["b_im"], q["c_re"] + 1j * q["c_im"]
        state = np.zeros((u.shape[0], lam.shape[0]), np.complex128)
        ys = np.zeros_like(u)
        for t in range(u.shape[1]):
            state = lam * state + np.exp(q["gamma_log"]) * (u[:, t] @ b)
            ys[:, t] = np.real(state @ c) + q["d"] * u[:, t]
        return ys

    x = dense(p["encoder"], np.asarray(xs, np.float64))
    for layer in p["layers"]:
        z = lru(layer["lru"], norm(layer.get("norm"), x) if model.prenorm else x)
        z = gelu(z)
        z = dense(layer["glu_1"], z) * (1 / (1 + np.exp(-dense(layer["glu_2"], z))))
        x = x + z if model.prenorm else norm(layer.get("norm"), x + z)
    return dense(p["decoder"], x)


@pytest.mark.parametrize(
    "model",
    [TINY, TINY._replace(parallel=False), TINY._replace(prenorm=False), TINY._replace(norm="none", num_layers=1)],
    ids=["prenorm_parallel", "prenorm_scan", "postnorm", "no_norm"],
)
def test_the_network_follows_its_equations(model):
    params = lru_stack.init_params(model, jax.random.key(0))
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(9), a.shape), params)  # not 0 or 1
    xs = jax.random.normal(jax.random.key(1), (2, 7, model.input_size))
    got = jax.jit(lambda p, x: lru_stack.apply(model, p, x))(params, xs)
    np.testing.assert_allclose(got, numpy_network(model, params, xs), rtol=2e-4, atol=2e-5)


def test_the_reference_shapes_and_initialisation():
    model = lru_stack.LRUStackConfig(input_size=8, output_size=14)
    shapes = jax.eval_shape(lambda k: lru_stack.init_params(model, k), jax.random.key(0))
    # The reference's modules at these sizes hold 2,304 (encoder) + 4 x 263,808 (layers; its batch norm's scale and
    # bias count as this layer norm's) + 3,598 (decoder) parameters.
    assert sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes)) == 1_061_134
    lru = shapes["layers"][0]["lru"]
    assert (lru["b_re"].shape, lru["c_re"].shape, lru["d"].shape, lru["nu_log"].shape) == (
        (256, 128), (128, 256), (256,), (128,)
    )  # fmt: skip
    params = lru_stack.cell_of(model).init_params(jax.random.key(0), 256, 256)
    radius = np.exp(-np.exp(np.asarray(params["nu_log"])))
    assert 0 < radius.min() and radius.max() < 1 and np.exp(np.asarray(params["theta_log"])).max() < 6.28
    np.testing.assert_allclose(np.exp(2 * np.asarray(params["gamma_log"])), 1 - radius**2, rtol=1e-5, atol=1e-6)


def test_dropout_keeps_one_mask_per_sequence_and_feature():
    x = jnp.ones((3, 9, 40))
    dropped = np.asarray(lru_stack.dropout(x, 0.5, jax.random.key(0)))
    assert set(np.unique(dropped)) == {0.0, 2.0}
    np.testing.assert_array_equal(dropped, np.broadcast_to(dropped[:, :1], dropped.shape))  # the same at every step
    assert not np.array_equal(dropped[0, 0], dropped[1, 0])  # but not in every sequence
    params = lru_stack.init_params(TINY, jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (2, 7, 3))
    apply = jax.jit(lru_stack.apply, static_argnums=0)
    with_key = [apply(TINY, params, xs, jax.random.key(k)) for k in (0, 0, 1)]
    np.testing.assert_array_equal(with_key[0], with_key[1])
    assert not np.allclose(with_key[0], with_key[2])
    np.testing.assert_array_equal(apply(TINY, params, xs), apply(TINY._replace(dropout=0.0), params, xs))


# ------------------------------------------------------------------------------------------------------ the optimizer


def test_the_two_groups_and_the_schedule():
    params = lru_stack.init_params(TINY._replace(num_layers=1), jax.random.key(0))
    labels = lru_optimizer.group_labels(params)
    assert {k for k, v in labels["layers"][0]["lru"].items() if v == "recurrence"} == set(lru_optimizer.RECURRENCE)
    assert labels["layers"][0]["lru"]["c_re"] == labels["layers"][0]["lru"]["d"] == "other"
    assert set(jax.tree.leaves(labels["encoder"])) == set(jax.tree.leaves(labels["layers"][0]["norm"])) == {"other"}

    rate = lru_optimizer.schedule("cosine", 1e-3, 1e-7, 100)
    counts = [min(max(k - 1, 0), 100) for k in (0, 1, 2, 51, 101, 150)]  # the reference's lag, then lr_min
    expected = [(1e-3 - 1e-7) * (1 + np.cos(np.pi * count / 100)) / 2 + 1e-7 for count in counts]
    np.testing.assert_allclose([float(rate(jnp.int32(k))) for k in (0, 1, 2, 51, 101, 150)], expected, rtol=1e-6)

    # One update with zero gradients: AdamW's decay shrinks the "other" group by lr * wd, the LRU group stays.
    opt = lru_optimizer.optimizer(1e-2, 0.5, 0.1, 0.0, 10, "constant")
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = opt.tx.update(zeros, opt.tx.init(params), params)
    np.testing.assert_allclose(updates["encoder"]["kernel"], -1e-3 * params["encoder"]["kernel"], rtol=1e-6)
    np.testing.assert_array_equal(updates["layers"][0]["lru"]["nu_log"], 0.0)
    # With a unit gradient, Adam's first step is the rate itself: lr_factor x for the LRU group.
    ones = jax.tree.map(jnp.ones_like, params)
    updates, _ = opt.tx.update(ones, opt.tx.init(params), jax.tree.map(jnp.zeros_like, params))
    np.testing.assert_allclose(updates["layers"][0]["lru"]["b_re"], -0.5e-2, rtol=1e-5)
    np.testing.assert_allclose(updates["layers"][0]["glu_1"]["kernel"], -1e-2, rtol=1e-5)


# ------------------------------------------------------------------------------------------------------ the experiment

SMALL = {
    "pattern_length": 2,
    "pad_length": 1,
    "bits": 2,
    "train_size": 256,
    "val_size": 32,
    "test_size": 32,
    "batch_size": 16,
    "d_model": 16,
    "state_size": 8,
    "num_layers": 1,
    "dropout": 0.0,
    "learning_rate": 1e-2,
    "eval_batch_size": 32,
    "log_every": 8,
    "checkpoint_every": 8,
    "epochs": 1,
}


def test_a_tiny_run_learns_writes_its_results_resumes_and_a_longer_rerun_equals_a_straight_run(tmp_path):
    short = lru_copy.Config(**SMALL, schedule="constant")  # the cosine's horizon would fix --epochs in the workdir
    long = config_lib.replace(short, epochs=2)
    ex.run(lru_copy.EXPERIMENT, short, tmp_path / "extended")
    extended = ex.run(lru_copy.EXPERIMENT, long, tmp_path / "extended")
    results = ex.run(lru_copy.EXPERIMENT, long, tmp_path / "straight")
    assert results["steps"] == 32 and results["steps_per_epoch"] == 16 and results["sequence_length"] == 6
    assert [h["epoch"] for h in results["history"]] == [1.0, 2.0]
    assert results["test_bit_accuracy"] > 0.65  # chance is 0.5 (128 test bits)
    assert 0.0 <= results["test_exact_match"] <= 1.0
    best = max(results["history"], key=lambda h: h["val_bit_accuracy"])
    assert results["test_bit_accuracy_at_best_val"] == best["test_bit_accuracy"]
    assert (
        json.loads((tmp_path / "straight" / "results.json").read_text())["test_exact_match"]
        == (results["test_exact_match"])
    )
    untimed = lambda history: [{k: v for k, v in h.items() if k != "train_s"} for h in history]
    assert untimed(extended["history"]) == untimed(results["history"])  # bit for bit on CPU
    metrics = (tmp_path / "straight" / "metrics.jsonl").read_text()
    assert [json.loads(line)["step"] for line in metrics.splitlines()] == [8, 16, 24, 32]
    losses = [[json.loads(line)["loss"] for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
              for d in ("extended", "straight")]  # fmt: skip
    assert losses[0] == losses[1]
    again = ex.run(lru_copy.EXPERIMENT, long, tmp_path / "straight")  # resumes: nothing left to train
    assert again["test_bit_accuracy"] == results["test_bit_accuracy"]
    assert (tmp_path / "straight" / "metrics.jsonl").read_text() == metrics


def test_a_bad_flag_is_refused_in_one_line_before_the_workdir_is_touched(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(config_lib.ConfigError, match=r"^--norm must be one of layer, none, got 'batch'$"):
        ex.run_command(lru_copy.EXPERIMENT, ["lru_copy.py", f"--workdir={out}", "--norm=batch"])
    with pytest.raises(config_lib.ConfigError, match=r"^--r_min=0.9 must be below --r_max=0.5$"):
        ex.run_command(lru_copy.EXPERIMENT, ["lru_copy.py", f"--workdir={out}", "--r_min=0.9", "--r_max=0.5"])
    assert not out.exists()
