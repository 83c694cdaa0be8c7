"""Mixed precision (seqjax.precision): bfloat16 products, float32 state, parameters and gradients.

References: NumPy float64 with the operands rounded to bfloat16 where the policy rounds them, the
closed form of an LSTM cell state that adds a constant at every step, and the dtypes of every
matrix product in the traced training step.
"""

import collections
import json

import captioning
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jax_core

import seqjax
from seqjax import experiment as ex
from seqjax import precision, scan, train
from seqjax.baselines import nnlm
from seqjax.models import captioner, classifier, lm, lm_training, seq2seq, tagger, transformer_lm

BF16 = jnp.bfloat16


def bf16(a) -> np.ndarray:
    """``a`` rounded to bfloat16, as float64."""
    return np.asarray(np.asarray(a, np.float32).astype(BF16), np.float64)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def products(jaxpr, found=None) -> collections.Counter:
    """``((operand dtypes), result dtype)`` of every dot_general in ``jaxpr`` and the jaxprs inside it."""
    found = collections.Counter() if found is None else found
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found[(tuple(str(v.aval.dtype) for v in eqn.invars), str(eqn.outvars[0].aval.dtype))] += 1
        for value in eqn.params.values():
            for sub in value if isinstance(value, list | tuple) else [value]:
                if isinstance(sub, jax_core.ClosedJaxpr):
                    products(sub.jaxpr, found)
                elif isinstance(sub, jax_core.Jaxpr):
                    products(sub, found)
    return found


def test_compute_dtype_names():
    assert precision.compute_dtype("bfloat16") == jnp.dtype(BF16)
    assert precision.compute_dtype("float32") == jnp.dtype(jnp.float32)
    with pytest.raises(ValueError, match="--compute_dtype must be one of float32, bfloat16, got 'float16'"):
        precision.compute_dtype("float16")


def test_cast_floating_leaves_integers_and_keys():
    tree = {"w": jnp.ones(3), "ids": jnp.arange(3), "mask": jnp.ones(2, bool), "key": jax.random.key(0)}
    cast = precision.cast_floating(tree, BF16)
    assert cast["w"].dtype == BF16
    assert cast["ids"].dtype == tree["ids"].dtype
    assert cast["mask"].dtype == jnp.bool_
    assert cast["key"] is tree["key"]


def test_carry_dtype_is_at_least_float32():
    assert precision.carry_dtype(BF16) == jnp.float32
    assert precision.carry_dtype(jnp.float32) == jnp.float32
    assert precision.carry_dtype(jnp.float16) == jnp.float32


def test_mixed_dot_against_numpy_with_bfloat16_operands():
    """Forward ``bf16(x) @ w`` summed in float32; backward ``bf16(g) w^T`` and ``bf16(x)^T bf16(g)``."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 3, 5)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((5, 4)), BF16)
    g = jnp.asarray(rng.standard_normal((2, 3, 4)), jnp.float32)
    y, vjp = jax.vjp(precision.dot, x, w)
    dx, dw = vjp(g)
    assert (y.dtype, dx.dtype, dw.dtype) == (jnp.float32, jnp.float32, BF16)
    np.testing.assert_allclose(y, bf16(x) @ bf16(w), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx, bf16(g) @ bf16(w).T, rtol=1e-6, atol=1e-6)
    expected_dw = bf16(x).reshape(-1, 5).T @ bf16(g).reshape(-1, 4)
    np.testing.assert_allclose(np.asarray(dw, np.float64), bf16(expected_dw), rtol=0, atol=0)
    # the same dtypes: an ordinary product
    x32, w32 = x, jnp.asarray(w, jnp.float32)
    np.testing.assert_array_equal(precision.dot(x32, w32), x32 @ w32)


def test_attention_scores_against_numpy_with_bfloat16_operands():
    """``q k^T`` summed in float32; backward ``bf16(g) k`` and ``bf16(g)^T q``; float32 inputs: the plain product."""
    rng = np.random.default_rng(2)
    q = jnp.asarray(rng.standard_normal((2, 3, 4)), BF16)
    k = jnp.asarray(rng.standard_normal((2, 5, 4)), BF16)
    g = jnp.asarray(rng.standard_normal((2, 3, 5)), jnp.float32)
    s, vjp = jax.vjp(precision.scores, q, k)
    dq, dk = vjp(g)
    assert (s.dtype, dq.dtype, dk.dtype) == (jnp.float32, BF16, BF16)
    np.testing.assert_allclose(s, bf16(q) @ np.swapaxes(bf16(k), 1, 2), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(dq, np.float64), bf16(bf16(g) @ bf16(k)))
    np.testing.assert_array_equal(np.asarray(dk, np.float64), bf16(np.swapaxes(bf16(g), 1, 2) @ bf16(q)))
    q32, k32 = (jnp.asarray(a, jnp.float32) for a in (q, k))
    np.testing.assert_array_equal(precision.scores(q32, k32), jnp.einsum("bqd,bkd->bqk", q32, k32))


def lstm_numpy(p, xs, bias_in_bf16: bool):
    """The LSTM with its products' operands rounded to bfloat16 and everything else in float64.

    ``u = bf16(bf16(x) W_ih)`` (a bfloat16 product), ``a = bf16(h) W_hh`` summed exactly; the scanned
    step adds ``b`` to ``u`` in bfloat16 (``bias_in_bf16``), the fused one in float32.
    """
    w_ih, w_hh, b = bf16(p["w_ih"]), bf16(p["w_hh"]), bf16(p["b"])
    h = c = np.zeros((xs.shape[1], w_hh.shape[0]))
    hs, cs = [], []
    for x in np.asarray(xs, np.float64):
        u = bf16(bf16(x) @ w_ih)
        u = bf16(u + b) if bias_in_bf16 else u + b
        z_i, z_f, z_g, z_o = np.split(u + bf16(h) @ w_hh, 4, axis=-1)
        c = sigmoid(z_f) * c + sigmoid(z_i) * np.tanh(z_g)
        h = sigmoid(z_o) * np.tanh(c)
        hs.append(h)
        cs.append(c)
    return np.stack(hs), np.stack(cs)


@pytest.mark.parametrize("fused", [False, True])
def test_lstm_in_bfloat16_against_numpy(fused):
    """bfloat16 params: outputs bfloat16, carry float32, and the numbers of the rounded-operand reference."""
    cell = seqjax.lstm()
    rng = np.random.default_rng(1)
    params32 = {k: jnp.asarray(0.5 * rng.standard_normal(v.shape), jnp.float32)
                for k, v in cell.init_params(jax.random.key(0), 3, 8).items()}  # fmt: skip
    params = precision.cast_floating(params32, BF16)
    xs = jnp.asarray(rng.standard_normal((12, 2, 3)), jnp.float32)  # [t, b, d]
    result = scan.unroll(cell, params, xs, time_major=True, fused=fused, return_carries=not fused)
    assert result.outputs.dtype == BF16
    assert result.carry.hidden.dtype == result.carry.cell.dtype == jnp.float32
    hs, cs = lstm_numpy(params32, xs, bias_in_bf16=not fused)
    np.testing.assert_allclose(np.asarray(result.carry.cell), cs[-1], atol=2e-5)
    np.testing.assert_allclose(np.asarray(result.carry.hidden), hs[-1], atol=2e-5)
    np.testing.assert_allclose(np.asarray(result.outputs, np.float64), bf16(hs), atol=1e-6)


@pytest.mark.parametrize("fused", [False, True])
def test_lstm_cell_state_accumulates_in_float32(fused):
    """f, i -> 1 and g = tanh(0.002): c_t = t tanh(0.002). In bfloat16 c would stop near 0.5, where
    its spacing (2^-8) makes the increment round away; the float32 carry keeps every step."""
    cell = seqjax.lstm()
    steps, hidden = 600, 2
    params = cell.init_params(jax.random.key(0), 1, hidden)
    big = 30.0
    bias = np.zeros((4, hidden), np.float32)
    bias[0], bias[1], bias[2], bias[3] = big, big, 0.002, big
    params = {"w_ih": jnp.zeros_like(params["w_ih"]), "w_hh": jnp.zeros_like(params["w_hh"]),
              "b": jnp.asarray(bias.reshape(-1))}  # fmt: skip
    params = precision.cast_floating(params, BF16)
    xs = jnp.zeros((steps, 1, 1), jnp.float32)
    result = scan.unroll(cell, params, xs, time_major=True, fused=fused)
    g = np.tanh(float(jnp.asarray(0.002, BF16)))
    np.testing.assert_allclose(np.asarray(result.carry.cell), steps * g, rtol=1e-4)
    assert steps * g > 1.0


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru", "gru_cho", "lstm_peephole"])
@pytest.mark.parametrize("fused", [False, True])
def test_every_product_of_a_cell_gradient_is_bfloat16(name, fused):
    cell = {"rnn": seqjax.rnn(), "lstm": seqjax.lstm(), "gru": seqjax.gru(), "gru_cho": seqjax.gru(reset_after=False),
            "lstm_peephole": seqjax.lstm(peephole=True)}[name]  # fmt: skip
    if fused and cell.fused is None:
        pytest.skip("no fused path")
    params = precision.cast_floating(cell.init_params(jax.random.key(0), 3, 8), BF16)
    xs = jnp.ones((2, 5, 3), BF16)

    def loss(p):
        return jnp.sum(scan.unroll(cell, p, xs, fused=fused).outputs.astype(jnp.float32))

    found = products(jax.make_jaxpr(jax.grad(loss))(params).jaxpr)
    assert found and all(operands == ("bfloat16", "bfloat16") for operands, _ in found), found
    assert any(result == "float32" for _, result in found)  # the recurrent products sum into the float32 carry
    assert all(g.dtype == BF16 for g in jax.tree.leaves(jax.grad(loss)(params)))


def lm_steps(compute_dtype, steps=6):
    config = lm.LMConfig(vocab_size=30, cell="lstm", num_layers=2, hidden_size=16)
    params = lm.init_params(config, jax.random.key(0))
    streams = jnp.asarray(np.random.default_rng(0).integers(0, 30, (4, 41)), jnp.int32)
    training = train.make_training(
        lm_training.window_loss(config, 10), train.optimizer("sgd", 1.0), stateful=True, compute_dtype=compute_dtype
    )
    state = training.init(params, jax.random.key(1), lm.init_carry(config, params, 4))
    batches = [(streams, jnp.int32(k % 4), jnp.bool_(k % 4 == 0)) for k in range(steps)]
    step = jax.jit(training.step)
    losses = []
    for batch in batches:
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    return training, state, batches[0], losses


def test_mixed_precision_training_keeps_float32_masters_and_follows_float32():
    training, state, batch, losses = lm_steps(BF16)
    _, state32, _, losses32 = lm_steps(None)
    for tree in (state.params, state.opt_state, state.model_state):
        assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.floating))
    np.testing.assert_allclose(losses, losses32, rtol=5e-3)
    initial = lm.init_params(lm.LMConfig(vocab_size=30, cell="lstm", num_layers=2, hidden_size=16), jax.random.key(0))
    moved = train.global_norm(jax.tree.map(jnp.subtract, state32.params, initial))
    apart = train.global_norm(jax.tree.map(jnp.subtract, state.params, state32.params))
    assert float(apart) < 0.1 * float(moved), (apart, moved)  # measured 0.032: bf16 follows the f32 run
    found = products(jax.make_jaxpr(training.step)(state, batch).jaxpr)
    assert all(operands == ("bfloat16", "bfloat16") for operands, _ in found), found


def model_losses() -> dict:
    """``name -> (loss_fn, params shapes, batch)`` for every model a supervised experiment trains, tiny."""
    rng = np.random.default_rng(0)
    b, t = 3, 5

    def ids(vocab, *shape):
        return jnp.asarray(rng.integers(1, vocab, shape), jnp.int32)

    lengths = jnp.asarray([5, 3, 4], jnp.int32)
    cases = {}

    def add(name, module, config, batch):
        shapes = jax.eval_shape(lambda key: module.init_params(config, key), jax.random.key(0))
        cases[name] = (module.batch_loss(config), shapes, batch)

    for encoder in ("rnn", "transformer"):
        both_ways = encoder == "rnn"
        config = classifier.ClassifierConfig(vocab_size=20, hidden_size=8, embed_size=6, encoder=encoder, num_heads=2,
                                             bidirectional=both_ways, pooling="mean")  # fmt: skip
        add(f"classifier_{encoder}", classifier, config, (ids(20, b, t), lengths, ids(2, b)))
        config = tagger.TaggerConfig(vocab_size=20, char_vocab_size=10, num_tags=4, hidden_size=8, embed_size=6,
                                     char_embed_size=4, char_features=5, encoder=encoder, num_heads=2,
                                     bidirectional=both_ways)  # fmt: skip
        add(f"tagger_{encoder}", tagger, config, (ids(20, b, t), ids(10, b, t, 4), lengths, ids(4, b, t)))
    for attention in ("luong", "bahdanau", "none"):
        config = seq2seq.Seq2SeqConfig(src_vocab_size=20, tgt_vocab_size=15, hidden_size=8, embed_size=6,
                                       attention=attention)  # fmt: skip
        tgt_lengths = jnp.asarray([4, 2, 3], jnp.int32)
        add(
            f"seq2seq_{attention}", seq2seq, config, (ids(20, b, t), lengths, ids(15, b, 4), ids(15, b, 4), tgt_lengths)
        )
    config = captioner.CaptionerConfig(vocab_size=12, hidden_size=8, embed_size=6, conv_features=(4,), image_features=8)
    images = jnp.asarray(rng.random((b, 8, 24)), jnp.float32)
    add("captioner", captioner, config, (images, ids(12, b, 4), jnp.asarray([4, 2, 3], jnp.int32)))
    config = nnlm.NNLMConfig(vocab_size=20, context=3, embed_size=4, hidden_size=6, direct=True, dropout=0.1)
    add("nnlm", nnlm, config, (ids(20, 10, 3), ids(20, 10), jnp.arange(b)))
    config = transformer_lm.TransformerLMConfig(vocab_size=20, context=6, num_layers=1, d_model=8, num_heads=2)
    shapes = jax.eval_shape(lambda key: transformer_lm.init_params(config, key), jax.random.key(0))
    cases["transformer_lm"] = (lm_training.independent_window_loss(config, 6), shapes, (ids(20, b, 13), 0, True))
    return cases


MODEL_LOSSES = model_losses()


@pytest.mark.parametrize("name", list(MODEL_LOSSES))
def test_every_model_trains_with_bfloat16_products(name):
    """Traced only (strict dtype promotion): the gradient of each experiment's loss on bfloat16 params multiplies
    bfloat16 operands everywhere, the attention scores' backward included."""
    loss_fn, shapes, batch = MODEL_LOSSES[name]

    def loss(params):
        return loss_fn(precision.cast_floating(params, BF16), batch, jax.random.key(1))[0]

    found = products(jax.make_jaxpr(jax.grad(loss))(shapes).jaxpr)
    assert found and {operands for operands, _ in found} == {("bfloat16", "bfloat16")}, found


def test_an_experiment_trains_and_evaluates_in_bfloat16(tmp_path):
    """The captioning experiment end to end with --compute_dtype=bfloat16: float32 checkpoints, finite losses."""
    config = captioning.Config(train_size=32, dev_size=8, test_size=8, conv1=3, conv2=4, image_features=10, embed=6,
                               hidden=12, batch_size=16, epochs=1, eval_batch_size=8, figure_examples=2, log_every=1,
                               compute_dtype="bfloat16")  # fmt: skip
    out = tmp_path / "run"
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam: b ** count with an int32 count
        results = ex.run(captioning.EXPERIMENT, config, out)
    assert results["steps"] == 2 and 0 <= results["test"]["word_accuracy"] <= 1
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(np.isfinite(losses))
