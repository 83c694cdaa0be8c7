"""AWD-LSTM's regularisers: DropConnect on W_hh, variational (per-sequence) dropout and embedding dropout.

References are written again here: a NumPy LSTM loop with an explicitly masked ``W_hh``, the recurrent matrix
recovered from a language model's outputs by least squares, and an exhaustive search over word-type masks.
"""

import itertools

import jax
import jax.numpy as jnp
import language_model
import numpy as np
import pytest
from refusals import refusal

from seqjax.cells import lstm, rnn
from seqjax.layers import dropout, unroll_layers
from seqjax.models import lm, lm_training
from seqjax.scan import unroll
from seqjax.weight_dropout import drop_connect, embed_with_dropout

P = 0.5
_apply = jax.jit(lm.apply, static_argnums=0)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _numpy_lstm(params, w_hh, xs):
    """``[b, t, h]`` outputs of the (i, f, g, o) LSTM over ``xs [b, t, d]`` with the given recurrent matrix."""
    w_ih, b = (np.asarray(params[k], np.float64) for k in ("w_ih", "b"))
    h = c = np.zeros((xs.shape[0], w_hh.shape[0]))
    outputs = []
    for t in range(xs.shape[1]):
        z_i, z_f, z_g, z_o = np.split(xs[:, t] @ w_ih + b + h @ w_hh, 4, axis=-1)
        c = _sigmoid(z_f) * c + _sigmoid(z_i) * np.tanh(z_g)
        h = _sigmoid(z_o) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1)


def test_drop_connect_is_one_scaled_mask_of_w_hh_for_every_step_of_an_lstm(key):
    k_params, k_x, k_drop = jax.random.split(key, 3)
    params = lstm().init_params(k_params, 2, 3)
    xs = np.asarray(jax.random.normal(k_x, (2, 5, 2)), np.float64)
    dropped = drop_connect(params, P, k_drop)
    w_hh, new_w_hh = np.asarray(params["w_hh"], np.float64), np.asarray(dropped["w_hh"], np.float64)
    mask = new_w_hh != 0
    assert 0 < mask.mean() < 1
    np.testing.assert_allclose(new_w_hh[mask], w_hh[mask] / (1 - P), rtol=1e-6)  # kept: scaled by 1 / (1 - p)
    assert dropped["w_ih"] is params["w_ih"] and dropped["b"] is params["b"]
    outputs = unroll(lstm(), dropped, jnp.asarray(xs, jnp.float32)).outputs
    np.testing.assert_allclose(outputs, _numpy_lstm(params, np.where(mask, w_hh / (1 - P), 0.0), xs), atol=1e-5)
    other = np.asarray(drop_connect(params, P, jax.random.fold_in(k_drop, 1))["w_hh"]) != 0
    assert (other != mask).any()  # another batch, another mask
    assert drop_connect(params, P, None) is params  # evaluation


def _recovered_w_hh(config, params, tokens, key):
    """The recurrent matrix a one-layer tanh-RNN language model used, recovered from its logits.

    h_t = (logits_t - b_out) W_out^+ ; arctanh(h_t) - (E[w_t] W_ih + b) = h_{t-1} W~_hh, solved by least squares
    over every step t >= 1 of every sequence. Returns ``(W~_hh, largest residual)``.
    """
    logits, _ = _apply(config, params, lm.init_carry(config, params, tokens.shape[0]), tokens, key)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    hidden = (np.asarray(logits, np.float64) - p["out_b"]) @ np.linalg.pinv(p["out_w"])  # [b, t, h]
    layer = p["layers"][0]
    driven = np.arctanh(hidden) - p["embedding"][np.asarray(tokens)] @ layer["w_ih"] - layer["b"]
    previous, target = hidden[:, :-1].reshape(-1, hidden.shape[-1]), driven[:, 1:].reshape(-1, hidden.shape[-1])
    w_hh = np.linalg.lstsq(previous, target, rcond=None)[0]
    residual = max(np.abs(previous @ w_hh - target).max(), np.abs(driven[:, 0]).max())  # h_{-1} = 0
    return w_hh, residual


def test_the_language_model_drops_w_hh_once_per_batch_and_not_at_evaluation(key):
    config = lm.LMConfig(
        vocab_size=8, cell="rnn", num_layers=1, hidden_size=3, embed_size=4, init_scale=0.5, weight_drop=P
    )
    params = lm.init_params(config, key)
    tokens = jax.random.randint(jax.random.fold_in(key, 1), (3, 6), 0, 8)
    w_hh = np.asarray(params["layers"][0]["w_hh"], np.float64)
    masks = []
    for batch_key in jax.random.split(jax.random.fold_in(key, 2), 2):
        used, residual = _recovered_w_hh(config, params, tokens, batch_key)
        assert residual < 1e-4  # one matrix explains every step of every sequence
        kept = np.abs(used) > 1e-4
        np.testing.assert_allclose(used[kept], w_hh[kept] / (1 - P), atol=1e-4)
        assert 0 < kept.mean() < 1
        masks.append(kept)
    assert (masks[0] != masks[1]).any()
    used, residual = _recovered_w_hh(config, params, tokens, None)
    assert residual < 1e-4
    np.testing.assert_allclose(used, w_hh, atol=1e-4)


@pytest.mark.parametrize("option", ["weight_drop", "embedding_dropout"])
def test_training_draws_masks_with_only_weight_regularisers_on(key, option):
    config = lm.LMConfig(vocab_size=5, cell="rnn", num_layers=1, hidden_size=3, **{option: P})
    params = lm.init_params(config, key)
    loss = jax.jit(lm_training.window_loss(config, 4))
    batch = (jax.random.randint(key, (2, 9), 0, 5), jnp.int32(0), jnp.bool_(True))
    carries = lm.init_carry(config, params, 2)
    values = [float(loss(params, carries, batch, k)[0]) for k in jax.random.split(key, 2)]
    assert values[0] != values[1]


def test_separate_rates_drop_the_top_output_alone(key):
    """dropout_rates = (embedding output, top output) of one tanh layer: with (0, p) the hidden states are the
    evaluation's, and the readout sees each entry zeroed or scaled by 1 / (1 - p), recovered from the logits."""
    base = dict(vocab_size=8, cell="rnn", num_layers=1, hidden_size=3, embed_size=4, init_scale=0.5)
    params = lm.init_params(lm.LMConfig(**base), key)
    tokens = jax.random.randint(key, (2, 5), 0, 8)
    carries = lm.init_carry(lm.LMConfig(**base), params, 2)
    plain, _ = _apply(lm.LMConfig(**base), params, carries, tokens, None)
    top, _ = _apply(lm.LMConfig(**base, dropout_rates=(0.0, P)), params, carries, tokens, key)
    below, _ = _apply(lm.LMConfig(**base, dropout_rates=(P, 0.0)), params, carries, tokens, key)
    w_out, b_out = np.asarray(params["out_w"], np.float64), np.asarray(params["out_b"], np.float64)
    hidden = (np.asarray(plain, np.float64) - b_out) @ np.linalg.pinv(w_out)
    seen = (np.asarray(top, np.float64) - b_out) @ np.linalg.pinv(w_out)
    kept = np.abs(seen) > 1e-5
    np.testing.assert_allclose(seen[kept], hidden[kept] / (1 - P), atol=1e-5)
    assert 0 < kept.mean() < 1
    assert not np.allclose(below, plain, atol=1e-3) and not np.allclose(below, top, atol=1e-3)


def test_per_sequence_dropout_is_one_inverted_mask_per_sequence(key):
    x = jnp.ones((4, 6, 5))  # [b, t, d]
    dropped = np.asarray(dropout(x, P, key, shared_axes=(1,)))
    assert set(np.unique(dropped).tolist()) == {0.0, 1 / (1 - P)}
    assert (dropped == dropped[:, :1]).all()  # constant over time
    assert len({row.tobytes() for row in dropped[:, 0]}) > 1  # differs across the batch
    per_step = np.asarray(dropout(x, P, key))
    assert not (per_step == per_step[:, :1]).all()
    many = np.asarray(dropout(jnp.ones((4000, 2, 3)), 0.3, key, shared_axes=(1,)))
    assert abs(many.mean() - 1.0) < 0.03  # E[mask] = 1
    assert dropout(x, P, None, shared_axes=(1,)) is x


def test_unroll_layers_applies_the_per_sequence_mask_at_every_step(key):
    """A tanh RNN with W_ih = I and W_hh = 0 reads ones: y_t = tanh(mask), constant in t when the mask is."""
    params = {"w_ih": jnp.eye(3), "w_hh": jnp.zeros((3, 3)), "b": jnp.zeros(3)}
    xs = jnp.ones((3, 5, 3))
    for time_major in (False, True):
        ys = np.asarray(
            unroll_layers(
                rnn(), [params], xs, dropout_rates=P, dropout_keys=[key], dropout_mask="per_sequence",
                time_major=time_major,
            ).outputs
        )  # fmt: skip
        steps = ys if time_major else ys.transpose(1, 0, 2)  # [t, b, h]
        assert (steps == steps[:1]).all()
        np.testing.assert_allclose(np.unique(steps), [0.0, np.tanh(1 / (1 - P))], rtol=1e-6)


def test_embedding_dropout_drops_whole_word_types_for_the_batch(key):
    embedding = jax.random.normal(key, (6, 4)) + 3.0  # no zero rows
    tokens = jnp.array([[0, 1, 2, 3, 4, 5, 0], [5, 4, 3, 2, 1, 0, 1]])
    rows = np.asarray(embed_with_dropout(embedding, tokens, P, jax.random.fold_in(key, 1)))
    table = np.asarray(embedding)
    dropped_types = set()
    for token, row in zip(np.asarray(tokens).ravel(), rows.reshape(-1, 4), strict=True):
        if (row == 0).all():
            dropped_types.add(int(token))
        else:
            np.testing.assert_allclose(row, table[token] / (1 - P), rtol=1e-6)
    assert 0 < len(dropped_types) < 6
    for token, row in zip(np.asarray(tokens).ravel(), rows.reshape(-1, 4), strict=True):
        assert (row == 0).all() == (int(token) in dropped_types)  # every occurrence alike
    np.testing.assert_array_equal(embed_with_dropout(embedding, tokens, P, None), table[np.asarray(tokens)])


def test_tied_language_model_drops_the_embedding_lookup_only(key):
    """One tanh layer, tied weights: the logits match x_t = E~[w_t] read out by the undropped E^T for exactly one
    choice of dropped word types (searched over all of them), which drops some but not all."""
    v, h = 4, 3
    config = lm.LMConfig(
        vocab_size=v, cell="rnn", num_layers=1, hidden_size=h, init_scale=0.5, tie_weights=True, embedding_dropout=P
    )
    params = lm.init_params(config, key)
    tokens = jnp.array([[0, 1, 2, 3], [3, 2, 1, 0]])
    logits, _ = _apply(config, params, lm.init_carry(config, params, 2), tokens, jax.random.fold_in(key, 3))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    layer = p["layers"][0]

    def reference(keep):
        x = (p["embedding"] * (np.asarray(keep)[:, None] / (1 - P)))[np.asarray(tokens)]
        state, outputs = np.zeros((2, h)), []
        for t in range(tokens.shape[1]):
            state = np.tanh(x[:, t] @ layer["w_ih"] + layer["b"] + state @ layer["w_hh"])
            outputs.append(state @ p["embedding"].T + p["out_b"])
        return np.stack(outputs, axis=1)

    matches = [keep for keep in itertools.product((0, 1), repeat=v) if np.allclose(logits, reference(keep), atol=1e-5)]
    assert len(matches) == 1 and 0 < sum(matches[0]) < v


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--weight_drop=1.0"], "--weight_drop"),
        (["--embedding_dropout=-0.1"], "--embedding_dropout"),
        (["--dropout_mask=per_batch"], "--dropout_mask"),
        (["--weight_drop=0.5", "--cell=lru"], "--weight_drop needs a cell with a 'w_hh' parameter; cell lru has none"),
        (["--model=transformer", "--embedding_dropout=0.1"], "--embedding_dropout needs --model=rnn"),
        (["--model=transformer", "--dropout_mask=per_sequence"], "--dropout_mask=per_sequence needs --model=rnn"),
        (["--model=transformer", "--dropout_rates=0.1,0.1,0.1"], "--dropout_rates needs --model=rnn"),
        (
            ["--dropout_rates=0.4,0.25"],
            "--dropout_rates needs num_layers + 1 = 3 rates, got 2 (--cell=lstm",
        ),
        (["--dropout_rates=0.4,1.0,0.4"], "--dropout_rates"),
        (
            ["--proj_size=4", "--cell=gru"],
            "--proj_size projects an LSTM's hidden state (lstm, lstm_peephole), not",
        ),
        (["--proj_size=4", "--model=transformer"], "--proj_size needs --model=rnn"),
        (
            ["--proj_size=300"],
            "--proj_size=300 must be in [0, hidden_size = 200] (--cell=lstm, --num_layers=2",
        ),
    ],
)
def test_bad_regulariser_flags_are_one_line(tmp_path, flags, expected):
    assert expected in refusal(language_model, f"--workdir={tmp_path / 'run'}", *flags)
    assert not (tmp_path / "run").exists()


def test_lm_config_refuses_weight_drop_without_w_hh():
    with pytest.raises(ValueError, match="weight_drop needs a cell with a 'w_hh' parameter; cell lru has none"):
        lm.LMConfig(vocab_size=5, cell="lru", weight_drop=0.5)
