"""seqjax.models.task_model: each body against NumPy, causality, the flatten readout of a bidirectional stack."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import normal

from seqjax.models import task_model

V, C, H, T, B = 5, 3, 4, 6, 2


def _tokens(seed, t=T):
    return jnp.asarray(np.random.default_rng(seed).integers(0, V, (B, t)), jnp.int32)


def _np(tree):
    return jax.tree.map(np.asarray, tree)


def _tanh_rnn(p, xs):
    """h_t = tanh(x_t W_ih + h_{t-1} W_hh + b), h_0 = 0, in NumPy: ``[b, t, h]``."""
    h, out = np.zeros((xs.shape[0], p["w_hh"].shape[0])), []
    for t in range(xs.shape[1]):
        h = np.tanh(xs[:, t] @ p["w_ih"] + h @ p["w_hh"] + p["b"])
        out.append(h)
    return np.stack(out, 1)


def _layer_norm(p, x, eps=1e-6):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_the_plain_stack_is_the_cell_on_one_hot_tokens_then_a_readout():
    config = task_model.TaskModelConfig("rnn", V, True, C, H, num_layers=2)
    params = task_model.init_params(config, jax.random.key(0))
    tokens = _tokens(1)
    p = _np(params)
    y = _tanh_rnn(p["body"][1], _tanh_rnn(p["body"][0], np.eye(V)[np.asarray(tokens)]))
    expected = y @ p["out"]["kernel"] + p["out"]["bias"]
    np.testing.assert_allclose(task_model.apply(config, params, tokens), expected, rtol=1e-5, atol=1e-5)


def test_the_residual_body_follows_its_equations():
    config = task_model.TaskModelConfig("rnn", 3, False, C, H, num_layers=2, body="residual")
    params = task_model.init_params(config, jax.random.key(2))
    params = jax.tree.map(lambda a: a + normal(7, a.shape, scale=0.3), params)  # nonzero biases, norms off 1 and 0
    xs = normal(3, (B, T, 3))
    p = _np(params)["body"]
    x = np.asarray(xs) @ p["in"]["kernel"] + p["in"]["bias"]
    for block in p["layers"]:
        z = _gelu(_tanh_rnn(block["cell"], _layer_norm(block["norm"], x)))
        glu_1 = z @ block["glu_1"]["kernel"] + block["glu_1"]["bias"]
        x = x + glu_1 * _sigmoid(z @ block["glu_2"]["kernel"] + block["glu_2"]["bias"])
    y = _layer_norm(p["final_norm"], x)
    expected = y @ np.asarray(params["out"]["kernel"]) + np.asarray(params["out"]["bias"])
    np.testing.assert_allclose(task_model.apply(config, params, xs), expected, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize(
    ("cell", "body"), [("gru", "plain"), ("lru_signed", "residual"), ("mingru", "residual"), ("transformer", "plain")]
)
def test_every_causal_body_answers_at_step_t_from_the_inputs_up_to_t(cell, body):
    config = task_model.TaskModelConfig(cell, V, True, C, 8, num_layers=2, body=body)
    params = task_model.init_params(config, jax.random.key(4))
    tokens = _tokens(5)
    changed = tokens.at[:, 3:].set((tokens[:, 3:] + 1) % V)
    before, after = (task_model.apply(config, params, x) for x in (tokens, changed))
    np.testing.assert_allclose(before[:, :3], after[:, :3], rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(np.asarray(before[:, 3:] - after[:, 3:]))) > 1e-4
    longer = jnp.concatenate([tokens, _tokens(6, 5)], axis=1)  # defined at any length (sinusoidal positions)
    np.testing.assert_allclose(task_model.apply(config, params, longer)[:, :T], before, rtol=1e-5, atol=1e-5)


def test_the_flatten_readout_reads_every_step_of_both_directions():
    """The MNIST-1D recipe: a bidirectional tanh RNN's 2 x h outputs at each of t steps, flattened step-major."""
    config = task_model.TaskModelConfig("rnn", 1, False, C, H, bidirectional=True, readout="flatten", length=T)
    params = task_model.init_params(config, jax.random.key(8))
    xs = normal(9, (B, T, 1))
    forward, backward = _np(params["body"][0])
    x = np.asarray(xs)
    y = np.concatenate([_tanh_rnn(forward, x), _tanh_rnn(backward, x[:, ::-1])[:, ::-1]], axis=-1)  # [b, t, 2h]
    expected = y.reshape(B, T * 2 * H) @ np.asarray(params["out"]["kernel"]) + np.asarray(params["out"]["bias"])
    logits = task_model.apply(config, params, xs)
    assert logits.shape == (B, C)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_inconsistent_shapes_are_refused():
    with pytest.raises(ValueError, match="flatten readout needs the sequence length"):
        task_model.TaskModelConfig("gru", 1, False, C, H, readout="flatten")
    with pytest.raises(ValueError, match="bidirectional applies to the plain recurrent stack only"):
        task_model.TaskModelConfig("gru", 1, False, C, H, body="residual", bidirectional=True)
    with pytest.raises(ValueError, match="unknown body 'deep'"):
        task_model.TaskModelConfig("gru", 1, False, C, H, body="deep")
    with pytest.raises(ValueError, match="pytorch init applies to the plain recurrent stack only"):
        task_model.TaskModelConfig("transformer", V, True, C, H, init="pytorch")


def test_the_pytorch_init_draws_every_parameter_uniform_within_one_over_root_fan_in():
    """U(-a, a): every value within a, mean 0 and variance a^2 / 3 (closed forms) over each parameter group."""
    h, t = 32, 10
    config = task_model.TaskModelConfig("gru", 1, False, C, h, readout="flatten", length=t, bidirectional=True,
                                        init="pytorch")  # fmt: skip
    params = task_model.init_params(config, jax.random.key(0))
    groups = [(np.concatenate([np.ravel(x) for x in jax.tree.leaves(params["body"])]), h**-0.5),
              (np.ravel(params["out"]["kernel"]), (2 * h * t) ** -0.5)]  # fmt: skip
    for values, a in groups:
        n = values.size
        assert np.all(np.abs(values) <= a) and np.max(np.abs(values)) > 0.99 * a
        assert abs(values.mean()) < 4 * a / np.sqrt(3 * n)
        assert values.var() == pytest.approx(a**2 / 3, rel=8 / np.sqrt(n))
    default = task_model.init_params(dataclasses.replace(config, init="seqjax"), jax.random.key(0))
    assert np.max(np.abs(default["body"][0][0]["w_ih"])) > h**-0.5  # the cells' own init is not this
