"""Attention vs recurrence in the gradient-flow experiment: ||dL/dx_t|| of a causal self-attention layer."""

import csv
import math

import gradient_flow
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import experiment as ex
from seqjax import gradflow, initializers
from seqjax.cells import rnn
from seqjax.scan import unroll


@pytest.fixture(autouse=True)
def _standard_promotion():
    """optax's Adam computes b ** count with an int32 count (dtype promotion)."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def _params(config, key, scale=0.5):
    """The experiment's attention params with every leaf (biases too) redrawn, so each one matters."""
    shapes = jax.eval_shape(lambda k: gradient_flow.init_attention_model(k, config), key)
    leaves, treedef = jax.tree.flatten(shapes)
    rng = np.random.default_rng(7)
    return jax.tree.unflatten(treedef, [jnp.asarray(scale * rng.standard_normal(x.shape, np.float32)) for x in leaves])


@jax.jit
def _input_gradients(params, xs, targets):
    def loss(inputs):
        outputs = gradient_flow.attention_outputs(params, inputs)
        return gradient_flow.output_loss(params["readout"], outputs, targets, "last")

    return gradflow.input_gradients(loss, xs)


def test_input_gradient_matches_a_numpy_hand_backward_pass(key):
    """dL/dx_t of y_T = z_T + softmax(q_T K^T / sqrt(h)) V W_o + b_o, L = (y_T r - y)^2, by the chain rule in NumPy."""
    config = gradient_flow.Config(seq_len=4, hidden=3, batch=1)
    params = _params(config, key)
    xs = jax.random.normal(jax.random.key(1), (1, 4, 2))
    targets = jnp.array([[0.3]])
    loss, grads = _input_gradients(params, xs, targets)

    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    x, t, h = np.asarray(xs[0], np.float64), 4, 3
    w_in, b_in = p["input"]["kernel"], p["input"]["bias"]
    att = p["attention"]
    w_q, w_k, w_v = (att[n]["kernel"][:, 0] for n in ("query", "key", "value"))  # one head: [h, h]
    b_q, b_k, b_v = (att[n]["bias"][0] for n in ("query", "key", "value"))
    w_o, b_o, r = att["out"]["kernel"][0], att["out"]["bias"], p["readout"][:, 0]
    angle = np.arange(t)[:, None] / 10000 ** (2 * (np.arange(h) // 2) / h)[None, :]
    pe = np.where(np.arange(h) % 2 == 0, np.sin(angle), np.cos(angle))  # sin on even, cos on odd features
    z = x @ w_in + b_in + pe
    q, k, v = z[-1] @ w_q + b_q, z @ w_k + b_k, z @ w_v + b_v
    s = k @ q / math.sqrt(h)
    w = np.exp(s - s.max())
    w /= w.sum()
    y = z[-1] + (w @ v) @ w_o + b_o
    error = y @ r - 0.3
    assert float(loss) == pytest.approx(error**2, rel=1e-5)
    g_y = 2 * error * r  # dL/dy_T
    g_a = w_o @ g_y  # dL/da, a = w @ v
    g_w = v @ g_a  # dL/dw_s
    g_s = w * (g_w - w @ g_w)  # softmax backward
    g_z = np.outer(w, g_a) @ w_v.T + np.outer(g_s, q) / math.sqrt(h) @ w_k.T  # through v_s and k_s
    g_z[-1] += g_y + (g_s @ k / math.sqrt(h)) @ w_q.T  # the residual and the query
    np.testing.assert_allclose(grads[0], g_z @ w_in.T, rtol=1e-4, atol=1e-6)


def test_attention_curve_is_flat_in_a_closed_form_case_while_a_linear_rnn_decays(key):
    """Zero query and key maps: uniform weights 1/T over the past, so for every t < T
    dL/dx_t = W_in W_v W_o dL/dy_T / T exactly, whatever the distance; the recurrence's falls as a^(T-t)."""
    config = gradient_flow.Config(seq_len=16, hidden=4, batch=3)
    params = _params(config, key)
    for name in ("query", "key"):
        params["attention"][name] = jax.tree.map(jnp.zeros_like, params["attention"][name])
    xs = jax.random.normal(jax.random.key(2), (3, 16, 2))
    targets = jax.random.normal(jax.random.key(3), (3, 1))
    _, grads = _input_gradients(params, xs, targets)
    norms = np.asarray(gradflow.mean_over_batch(gradflow.step_norms(grads)), np.float64)

    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    outputs = np.asarray(gradient_flow.attention_outputs(params, xs)[:, -1], np.float64)
    g_y = 2 * (outputs @ p["readout"] - np.asarray(targets)) * p["readout"][:, 0] / config.batch  # [b, h]
    through_values = g_y @ p["attention"]["out"]["kernel"][0].T @ p["attention"]["value"]["kernel"][:, 0].T
    closed_form = np.mean(np.linalg.norm(through_values @ p["input"]["kernel"].T / config.seq_len, axis=1))
    np.testing.assert_allclose(norms[:-1], closed_form, rtol=1e-5)
    ratio = norms / norms[-1]
    assert ratio[0] == pytest.approx(ratio[-2], rel=1e-5) and ratio[0] > 1e-3  # 15 steps back == 1 step back

    # a linear RNN h_t = a h_(t-1) + x_t W on the same inputs: ||dL/dx_t|| = a^(T-t) ||dL/dx_T||
    cell = rnn("identity", recurrent_init=initializers.recurrent_init("identity", 0.8))
    cell_params = gradient_flow.init_model(cell, key, config)

    def rnn_loss(inputs):
        outputs = unroll(cell, cell_params["cell"], inputs).outputs
        return gradient_flow.output_loss(cell_params["readout"], outputs, targets, "last")

    _, rnn_grads = jax.jit(gradflow.input_gradients, static_argnums=0)(rnn_loss, xs)
    rnn_norms = np.asarray(gradflow.mean_over_batch(gradflow.step_norms(rnn_grads)), np.float64)
    np.testing.assert_allclose(rnn_norms / rnn_norms[-1], 0.8 ** np.arange(15, -1, -1), rtol=1e-4)


def test_experiment_adds_input_gradients_only_when_attention_is_asked_for(tmp_path, key):
    config = gradient_flow.Config(cells=("rnn", "attention"), seq_len=5, hidden=4, batch=2, train_steps=1)
    summary = ex.run(gradient_flow.EXPERIMENT, config, tmp_path)
    with open(tmp_path / "gradient_norms.csv") as f:
        rows = list(csv.DictReader(f))
    measured = {(r["label"], r["measure"]) for r in rows}
    assert measured == {("rnn", "grad_norm"), ("rnn", "input_grad"), ("attention", "input_grad")}
    # snapshots 0, 1 x T: every model's input-gradient curve is normalised by its own last step
    assert len([r for r in rows if r["measure"] == "input_grad"]) == 2 * 2 * 5
    assert all(float(r["ratio"]) == pytest.approx(1.0) for r in rows if r["steps_back"] == "0")
    attention_record = summary["settings"][1]
    assert attention_record["label"] == "attention" and attention_record["snapshots"][0]["ratio_at_steps_back"] == {}
    assert set(attention_record["snapshots"][0]["input_ratio_at_steps_back"]) == {"4"}  # T - 1
    assert attention_record["snapshots"][0]["spectral_radii"] is None
    assert attention_record["snapshots"][1]["eval_loss"] != attention_record["snapshots"][0]["eval_loss"]  # trained
    assert (tmp_path / gradient_flow.INPUT_FIGURE).stat().st_size > 10_000

    # without "attention" the cells are measured as before: carry gradients only
    recurrent_only = gradient_flow.Config(cells=("rnn",), seq_len=5, hidden=4, batch=2)
    cell = gradient_flow.settings(recurrent_only)[0].cell
    params = gradient_flow.init_model(cell, key, recurrent_only)
    xs, targets = gradient_flow.task_batch(recurrent_only, key)
    _, norms = jax.jit(lambda p: gradient_flow.measure(cell, recurrent_only, p, xs, targets))(params)
    assert set(norms) == {("grad_norm", "hidden")}
