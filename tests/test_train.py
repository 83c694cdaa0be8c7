"""seqjax.train: one step against hand-written update rules, clipping as optax documents it, metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import train
from seqjax.scan import unroll


@pytest.fixture(autouse=True)
def _standard_dtype_promotion():
    """optax's Adam/Adagrad compute b ** count with an int32 count, which strict dtype promotion rejects."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": jnp.asarray(rng.standard_normal((3, 2)), jnp.float32), "b": jnp.zeros((2,), jnp.float32)}
    batch = (
        jnp.asarray(rng.standard_normal((8, 3)), jnp.float32),
        jnp.asarray(rng.standard_normal((8, 2)), jnp.float32),
    )
    return params, batch


def _mse(params, batch, key):
    del key
    x, y = batch
    return jnp.mean(jnp.square(x @ params["w"] + params["b"][None, :] - y)), {}


def _hand_grads(params, batch):
    """d/dparams of mean((x w + b - y)^2), written out: 2/N x^T r and 2/N sum(r)."""
    x, y = (np.asarray(a, np.float64) for a in batch)
    residual = x @ np.asarray(params["w"], np.float64) + np.asarray(params["b"], np.float64) - y
    n = residual.size
    return {"w": 2.0 / n * x.T @ residual, "b": 2.0 / n * residual.sum(axis=0)}


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(tree[k], np.float64)) for k in sorted(tree)])


def _one_step(name, clipping=None, lr=0.1, params=None, batch=None):
    clipping = train.Clipping() if clipping is None else clipping
    default_params, default_batch = _problem()
    params = default_params if params is None else params
    batch = default_batch if batch is None else batch
    tx = train.optimizer(name, lr)
    training = train.make_training(_mse, tx, clipping)
    state, metrics = jax.jit(training.step)(training.init(params, jax.random.key(0)), batch)
    return params, batch, state, metrics


def test_sgd_and_adam_first_steps_match_their_update_rules():
    """SGD: p - lr g. Adam, first step: m/(1-b1) = g, v/(1-b2) = g^2, so p - lr g / (|g| + eps)."""
    params, batch, state, _ = _one_step("sgd", lr=0.1)
    g = _hand_grads(params, batch)
    np.testing.assert_allclose(_flat(state.params), _flat(params) - 0.1 * _flat(g), rtol=1e-5, atol=1e-6)
    params, batch, state, _ = _one_step("adam", lr=0.01)
    expected = _flat(params) - 0.01 * _flat(g) / (np.abs(_flat(g)) + 1e-8)
    np.testing.assert_allclose(_flat(state.params), expected, rtol=1e-4, atol=1e-6)


def test_momentum_two_steps_match_heavy_ball():
    """v_1 = g_1, p_1 = p_0 - lr v_1; v_2 = 0.9 v_1 + g_2, p_2 = p_1 - lr v_2."""
    params, batch = _problem()
    tx = train.optimizer("momentum", 0.05, momentum=0.9)
    training = train.make_training(_mse, tx)
    step = jax.jit(training.step)
    state = training.init(params, jax.random.key(0))
    state, _ = step(state, batch)
    p1 = _flat(params) - 0.05 * _flat(_hand_grads(params, batch))
    g2 = _flat(_hand_grads(state.params, batch))
    state, _ = step(state, batch)
    expected = p1 - 0.05 * (0.9 * _flat(_hand_grads(params, batch)) + g2)
    np.testing.assert_allclose(_flat(state.params), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", train.OPTIMIZERS)
def test_every_optimizer_lowers_the_loss_on_a_fixed_batch(name):
    params, batch = _problem()
    tx = train.optimizer(name, 0.05)
    training = train.make_training(_mse, tx)
    step = jax.jit(training.step, donate_argnums=0)
    state = training.init(params, jax.random.key(0))
    first = None
    for _ in range(60):
        state, metrics = step(state, batch)
        first = float(metrics["loss"]) if first is None else first
    assert float(metrics["loss"]) < 0.7 * first
    assert int(state.step) == 60


def test_global_norm_clipping_rescales_exactly():
    """optax.clip_by_global_norm: g * c / ||g|| when ||g|| > c. With SGD lr 1 the update is that vector."""
    params, batch = _problem()
    g = _flat(_hand_grads(params, batch))
    threshold = 0.25 * np.linalg.norm(g)
    _, _, state, metrics = _one_step("sgd", train.Clipping("global_norm", threshold), lr=1.0)
    update = _flat(state.params) - _flat(params)
    np.testing.assert_allclose(update, -g * threshold / np.linalg.norm(g), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(metrics["update_norm"]), threshold, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["grad_norm"]), np.linalg.norm(g), rtol=1e-5)
    assert float(metrics["clipped"]) == 1.0
    _, _, _, metrics = _one_step("sgd", train.Clipping("global_norm", 4.0 * np.linalg.norm(g)), lr=1.0)
    assert float(metrics["clipped"]) == 0.0


def test_value_clipping_clips_each_element():
    params, batch = _problem()
    g = _flat(_hand_grads(params, batch))
    threshold = float(np.median(np.abs(g)))
    _, _, state, metrics = _one_step("sgd", train.Clipping("value", threshold), lr=1.0)
    np.testing.assert_allclose(_flat(state.params) - _flat(params), -np.clip(g, -threshold, threshold), rtol=1e-5)
    assert float(metrics["clipped"]) == 1.0


def test_metrics_are_the_norms_they_name():
    params, batch, state, metrics = _one_step("adam", lr=0.01)
    np.testing.assert_allclose(float(metrics["param_norm"]), np.linalg.norm(_flat(state.params)), rtol=1e-5)
    np.testing.assert_allclose(
        float(metrics["update_norm"]), np.linalg.norm(_flat(state.params) - _flat(params)), rtol=1e-4
    )
    np.testing.assert_allclose(float(metrics["loss"]), float(_mse(params, batch, None)[0]), rtol=1e-6)
    assert float(metrics["nonfinite"]) == 0.0


@pytest.mark.parametrize("skip_nonfinite", [False, True])
def test_an_undiagnosed_step_updates_exactly_as_a_diagnosed_one(skip_nonfinite):
    """``diagnose=False`` leaves out the parameter and update norms (0) and nothing else: the same state, bit for bit,
    and the same loss, gradient norm and clipping flag; one compiled step serves both."""
    params, batch = _problem()
    training = train.make_training(_mse, train.optimizer("adam", 0.01), train.Clipping("global_norm", 0.1),
                                   skip_nonfinite=skip_nonfinite)  # fmt: skip
    step = jax.jit(training.step)
    diagnosed, full = step(training.init(params, jax.random.key(0)), batch, jnp.bool_(True))
    quiet, lean = step(training.init(params, jax.random.key(0)), batch, jnp.bool_(False))
    plain = lambda state: jax.tree.leaves(state._replace(key=jax.random.key_data(state.key)))
    for a, b in zip(plain(diagnosed), plain(quiet), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(lean["param_norm"]) == float(lean["update_norm"]) == 0.0 and float(full["param_norm"]) > 0
    for name in ("loss", "grad_norm", "clipped", "nonfinite"):
        assert float(lean[name]) == float(full[name])
    assert step._cache_size() == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_nonfinite_parameter_is_reported_though_loss_and_gradient_are_finite(bad):
    """The loss ignores ``w[1]``: its gradient is 0 and the loss finite, yet a NaN or inf there is flagged (beside an
    empty leaf, which has no largest magnitude of its own)."""
    loss_fn = lambda p, b, k: (jnp.sum(jnp.square(p["w"][0] - b)), {})
    training = train.make_training(loss_fn, train.optimizer("sgd", 0.1))
    state = training.init({"w": jnp.asarray([0.0, bad]), "empty": jnp.zeros((0,))}, jax.random.key(0))
    _, metrics = jax.jit(training.step)(state, jnp.float32(1.0), jnp.bool_(False))
    assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["grad_norm"]))
    assert float(metrics["nonfinite"]) == 1.0


def test_the_jitted_step_compiles_once():
    """A second call with the new state (same shapes and dtypes) must not trace again."""
    traces = []

    def loss_fn(params, batch, key):
        traces.append(1)  # runs only while tracing
        return _mse(params, batch, key)

    params, batch = _problem()
    tx = train.optimizer("adam", 0.01)
    training = train.make_training(loss_fn, tx, learning_rate=train.schedule("cosine", 0.01, 10))
    step = jax.jit(training.step)
    state = training.init(params, jax.random.key(0))
    for _ in range(3):
        state, _ = step(state, batch)
    assert len(traces) == 1


def test_nonfinite_steps_are_skipped_and_counted():
    params, batch = _problem()
    tx = train.optimizer("adam", 0.01)
    training = train.make_training(_mse, tx, skip_nonfinite=True)
    step = jax.jit(training.step)
    state = training.init(params, jax.random.key(0))
    x, y = batch
    poisoned = (x.at[0, 0].set(jnp.nan), y)
    new_state, metrics = step(state, poisoned)
    assert float(metrics["nonfinite"]) == 1.0
    assert int(new_state.step) == 1
    np.testing.assert_array_equal(_flat(new_state.params), _flat(params))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), new_state.opt_state, state.opt_state))
    _, metrics = step(new_state, batch)
    assert float(metrics["nonfinite"]) == 0.0


def test_step_keys_are_a_function_of_the_step():
    """loss_fn sees fold_in(state.key, state.step): the same at the same step, different at the next."""
    seen = []

    def loss_fn(params, batch, key):
        noise = jax.random.normal(key, ())
        return _mse(params, batch, key)[0], {"noise": noise}

    params, batch = _problem()
    tx = train.optimizer("sgd", 0.0)
    training = train.make_training(loss_fn, tx)
    step = jax.jit(training.step)
    state = training.init(params, jax.random.key(7))
    for _ in range(2):
        state, metrics = step(state, batch)
        seen.append(float(metrics["noise"]))
    expected = [float(jax.random.normal(jax.random.fold_in(jax.random.key(7), k), ())) for k in range(2)]
    assert seen == expected


def test_schedules_follow_their_formulas():
    k, total = np.array([0, 25, 50, 100]), 100
    np.testing.assert_allclose([train.schedule("constant", 0.1)(s) for s in k], [0.1] * 4, rtol=1e-6)
    np.testing.assert_allclose(
        [train.schedule("cosine", 0.1, total)(s) for s in k], 0.1 * (1 + np.cos(np.pi * k / total)) / 2, atol=1e-7
    )
    np.testing.assert_allclose(
        [train.schedule("exponential", 0.1, total, 0.5)(s) for s in k], 0.1 * 0.5 ** (k / total), rtol=1e-5
    )
    np.testing.assert_allclose([train.schedule("linear", 0.1, total)(s) for s in k], 0.1 * (1 - k / total), atol=1e-7)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match="known: sgd, momentum, adam, rmsprop, adagrad"):
        train.optimizer("lamb", 0.1)
    with pytest.raises(ValueError, match="known: constant, cosine"):
        train.schedule("warmup", 0.1)
    with pytest.raises(ValueError, match="known: none, global_norm, value"):
        train.Clipping("norm", 1.0)
    with pytest.raises(ValueError, match="positive"):
        train.Clipping("global_norm", 0.0)


def test_trains_a_recurrent_cell(key):
    """End to end with the core: an LSTM learns to output the running mean of its inputs."""
    from seqjax import lstm

    cell = lstm()
    k_p, k_x = jax.random.split(key)
    params = {"cell": cell.init_params(k_p, 1, 8), "out": jnp.zeros((8, 1))}
    xs = jax.random.normal(k_x, (16, 10, 1))
    targets = jnp.cumsum(xs, axis=1) / jnp.arange(1, 11, dtype=jnp.float32)[None, :, None]

    def loss_fn(params, batch, key):
        del key
        outputs = unroll(cell, params["cell"], batch[0]).outputs
        return jnp.mean(jnp.square(outputs @ params["out"] - batch[1])), {}

    tx = train.optimizer("adam", 0.03)
    training = train.make_training(loss_fn, tx, train.Clipping("global_norm", 1.0))
    step = jax.jit(training.step, donate_argnums=0)
    state = training.init(params, key)
    losses = []
    for _ in range(80):
        state, metrics = step(state, (xs, targets))
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.2 * losses[0]
    assert np.isfinite(float(train.global_norm(state.params)))
