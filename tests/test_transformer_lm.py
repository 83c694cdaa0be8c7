"""The causal Transformer LM (seqjax/models/transformer_lm.py), its window evaluation, and
experiments/language_model.py --model=transformer end to end, in-process, on generated text."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import language_model
import numpy as np
import pytest
from test_language_model_experiment import markov_text

from seqjax import config as config_lib
from seqjax import experiment as ex
from seqjax.data.corpus import load_corpus
from seqjax.models import lm_training, transformer_lm
from seqjax.models.sampling import sample

TINY = transformer_lm.TransformerLMConfig(vocab_size=11, context=7, num_layers=2, d_model=8, num_heads=2, mlp_ratio=3)


_apply = jax.jit(transformer_lm.apply, static_argnums=0)  # one compilation per shape instead of eager dispatch


@pytest.fixture(scope="module")
def tiny_params():
    """Random params of TINY's shapes (every bias and norm non-zero, so that each one is checked)."""
    shapes = jax.eval_shape(functools.partial(transformer_lm.init_params, TINY), jax.random.key(0))
    leaves, treedef = jax.tree.flatten(shapes)
    rng = np.random.default_rng(0)
    return jax.tree.unflatten(treedef, [jnp.asarray(0.3 * rng.standard_normal(x.shape, np.float32)) for x in leaves])


def _counted(config, key) -> int:
    """The sizes of the parameter leaves summed (shapes only: nothing is computed)."""
    shapes = jax.eval_shape(functools.partial(transformer_lm.init_params, config), key)
    return sum(leaf.size for leaf in jax.tree.leaves(shapes))


def test_parameter_count_equals_a_hand_count(key):
    # V d = 88, context d = 56; per block: Q, K, V, O 4 * 64 + 4 * 8 = 288, feed-forward 8 * 24 + 24 + 24 * 8 + 8
    # = 416, two layer norms 32 -> 736, two blocks 1472; final norm 16; output 8 * 11 + 11 = 99.
    expected = 88 + 56 + 1472 + 16 + 99
    assert _counted(TINY, key) == expected
    assert transformer_lm.num_params(TINY) == expected
    bigger = dataclasses.replace(TINY, d_model=12, num_heads=3, num_layers=3, mlp_ratio=2, context=5)
    assert transformer_lm.num_params(bigger) == _counted(bigger, key)


def test_logits_at_t_do_not_depend_on_later_tokens(tiny_params):
    params = tiny_params
    tokens = jax.random.randint(jax.random.key(1), (2, 7), 0, 11)
    logits = _apply(TINY, params, tokens)
    for t in range(6):
        changed = tokens.at[:, t + 1 :].set((tokens[:, t + 1 :] + 3) % 11)
        other = _apply(TINY, params, changed)
        np.testing.assert_allclose(other[:, : t + 1], logits[:, : t + 1], rtol=1e-6, atol=1e-6)
        assert np.max(np.abs(other[:, t + 1 :] - logits[:, t + 1 :])) > 1e-4  # later positions do see them


def _layer_norm(x, p):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-6) * p["scale"] + p["bias"]


def _numpy_forward(config, params, tokens):
    """A pre-LN GPT written again in NumPy float64, one example at a time, heads in a Python loop."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    erf = np.vectorize(math.erf)
    d, t = config.d_model, len(tokens)
    x = p["encoder"]["embedding"][tokens] * math.sqrt(d) + p["encoder"]["positions"]["embedding"][:t]
    for block in p["encoder"]["blocks"]:
        a, z = block["attention"], _layer_norm(x, block["norm_attention"])
        out = np.zeros_like(x) + a["out"]["bias"]
        for h in range(config.num_heads):
            q, k, v = (z @ a[n]["kernel"][:, h] + a[n]["bias"][h] for n in ("query", "key", "value"))
            scores = q @ k.T / math.sqrt(q.shape[1])
            scores = np.where(np.tril(np.ones((t, t), bool)), scores, -np.inf)
            w = np.exp(scores - scores.max(1, keepdims=True))
            out += (w / w.sum(1, keepdims=True)) @ v @ a["out"]["kernel"][h]
        x = x + out
        f, z = block["feed_forward"], _layer_norm(x, block["norm_feed_forward"])
        u = z @ f["dense_1"]["kernel"] + f["dense_1"]["bias"]
        x = x + (0.5 * u * (1 + erf(u / math.sqrt(2)))) @ f["dense_2"]["kernel"] + f["dense_2"]["bias"]
    return _layer_norm(x, p["encoder"]["final_norm"]) @ p["out"]["kernel"] + p["out"]["bias"]


def test_logits_match_a_numpy_gpt(tiny_params):
    params = tiny_params
    tokens = np.array([[3, 1, 4, 1, 5, 9, 2], [6, 5, 3, 5, 8, 9, 7]])
    logits = _apply(TINY, params, jnp.asarray(tokens))
    for b in range(2):
        np.testing.assert_allclose(logits[b], _numpy_forward(TINY, params, tokens[b]), rtol=2e-4, atol=2e-5)
    with pytest.raises(ValueError, match="longer than the model's context"):
        transformer_lm.apply(TINY, params, jnp.zeros((1, 8), jnp.int32))


@pytest.mark.parametrize("stride", [7, 3])
def test_window_evaluation_scores_every_target_once_with_the_stated_context(tiny_params, stride):
    """Brute force: target j (input position j) scored from exactly the context the docstring promises."""
    params = tiny_params
    stream = np.asarray(jax.random.randint(jax.random.key(3), (20,), 0, 11))
    total, count = lm_training.evaluate_windows(TINY, params, stream[None], stride, chunk=4)
    assert count == 19
    contexts, last = [], []
    for j in range(19):
        # the window that scores j: the first if j < context, else the first k with j < k * stride + context
        k = 0 if j < TINY.context else -(-(j + 1 - TINY.context) // stride)
        context = stream[k * stride : j + 1]
        assert 1 <= len(context) <= TINY.context
        if j >= TINY.context:
            assert len(context) >= TINY.context - stride + 1
        contexts.append(np.pad(context, (0, TINY.context - len(context))))  # right padding: unseen (causal)
        last.append(len(context) - 1)
    logits = _apply(TINY, params, jnp.asarray(np.stack(contexts)))  # [19, context, V]
    log_probs = jax.nn.log_softmax(logits[np.arange(19), np.array(last)], axis=-1)
    expected = -float(jnp.sum(log_probs[np.arange(19), stream[1:20]]))
    assert total == pytest.approx(expected, rel=1e-5)


def test_experiment_trains_a_transformer_and_resumes(tmp_path):
    text = markov_text(tmp_path / "text.txt", 1200)
    corpus = load_corpus("chars", text)
    config = language_model.Config(
        corpus="chars", data=str(text), model="transformer", num_layers=1, hidden=8, num_heads=2, mlp_ratio=2,
        bptt=8, batch_size=4, optimizer="adam", learning_rate=0.02, epochs=1, decay_epoch=10, eval_stride=4,
        log_every=100, checkpoint_every=33,
    )  # fmt: skip
    out = tmp_path / "run"
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam: b ** count with an int32 count
        first = ex.run(language_model.EXPERIMENT, config, out, corpus)
        second = ex.run(language_model.EXPERIMENT, config_lib.replace(config, epochs=2), out, corpus)
    model = language_model.model_config(config, len(corpus.vocab))
    assert first["num_params"] == second["num_params"] == transformer_lm.num_params(model)
    assert first["steps"] == 33 and second["steps"] == 66
    # resumed from the checkpoint at step 33: epoch 1 is not trained (nor evaluated) again
    assert len((out / "eval" / "metrics.jsonl").read_text().splitlines()) == 2
    assert second["history"][0] == first["history"][0]
    assert max(first["valid"]["nats"], second["valid"]["nats"]) < 0.9 * math.log(5)  # below the uniform guess
    assert {"num_heads", "mlp_ratio"} <= set(config_lib.fixed_names(config))  # what a checkpoint depends on
    assert not {"num_heads", "mlp_ratio"} & set(config_lib.fixed_names(config_lib.replace(config, model="rnn")))


@pytest.mark.parametrize("prime_length", [3, 9], ids=["short-prime", "prime-longer-than-context"])
def test_sampling_rereads_the_last_context_tokens(tiny_params, prime_length):
    """``sample`` (a fixed window in a scan) = a Python loop that rereads the last ``context`` tokens of the text,
    greedy and drawn, past the point where the window slides."""
    prime = jnp.arange(prime_length, dtype=jnp.int32) % TINY.vocab_size
    key = jax.random.key(3)
    logits_of = jax.jit(lambda tokens: transformer_lm.apply(TINY, tiny_params, tokens[None, :])[0, -1])
    for kw in (dict(greedy=True), dict(temperature=0.7, top_k=4)):
        text = [int(t) for t in prime]
        for i in range(12):
            logits = logits_of(jnp.asarray(text[-TINY.context :], jnp.int32))
            if kw.get("greedy"):
                text.append(int(jnp.argmax(logits)))
            else:
                scaled = logits / kw["temperature"]
                scaled = jnp.where(scaled >= jnp.sort(scaled)[-kw["top_k"]], scaled, -jnp.inf)
                text.append(int(jax.random.categorical(jax.random.fold_in(key, i), scaled)))
        drawn = sample(TINY, tiny_params, prime, key, length=12, **kw)
        assert [int(t) for t in drawn] == text[prime_length:], kw
