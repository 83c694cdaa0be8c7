"""The LSTM with a projection (LSTMP, ``lstm(proj_size=p)``) against its equations written again in NumPy float64,
alone, with peepholes, stacked (``layers.stacked``) and read both ways (``layers.init_layers``/``unroll_layers``).
PyTorch's ``nn.LSTM(proj_size=p)`` is the reference of tests/test_torch_interop.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seqjax
from seqjax import initializers, layers

D, H, P, B, T = 3, 4, 2, 2, 5


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def random_params(cell, seed, d=D):
    """float64 params shaped as ``cell.init_params`` makes them, every leaf 0.6 * N(0, 1)."""
    shapes = jax.eval_shape(lambda: cell.init_params(jax.random.key(0), d, H, jnp.float64))
    rng = np.random.default_rng(seed)
    return {name: jnp.asarray(0.6 * rng.standard_normal(a.shape)) for name, a in shapes.items()}


def lstmp_numpy(p, xs, h, c):
    """xs [t, b, d]; h [b, p], c [b, h]: the per-step (h_t [b, p], c_t [b, h]) of

    z = x W_ih + b + h W_hh;  i, f = sigmoid(z_i + p_i c, z_f + p_f c);  c = f c + i tanh(z_g);
    o = sigmoid(z_o + p_o c);  h = (o tanh(c)) W_hr      (peepholes p only when given)
    """
    p = {name: np.asarray(a, np.float64) for name, a in p.items()}
    w, u, b = (np.split(p[name], 4, axis=-1) for name in ("w_ih", "w_hh", "b"))
    p_i, p_f, p_o = p.get("peephole", np.zeros((3, c.shape[-1])))
    hs, cs = [], []
    for x in np.asarray(xs, np.float64):
        z_i, z_f, z_g, z_o = (x @ w[k] + b[k] + h @ u[k] for k in range(4))
        c = sigmoid(z_f + p_f * c) * c + sigmoid(z_i + p_i * c) * np.tanh(z_g)
        h = (sigmoid(z_o + p_o * c) * np.tanh(c)) @ p["w_hr"]
        hs.append(h)
        cs.append(c)
    return np.stack(hs), np.stack(cs)


@pytest.mark.parametrize("peephole", [False, True])
def test_lstmp_cell_matches_numpy(peephole):
    """unroll of lstm(proj_size=2) from a nonzero carry: outputs [b, t, p], final (h [b, p], c [b, h]) as NumPy."""
    with jax.enable_x64(True):
        cell = seqjax.lstm(peephole=peephole, proj_size=P)
        params = random_params(cell, seed=1)
        assert {name: a.shape for name, a in params.items()} == {
            "w_ih": (D, 4 * H),
            "w_hh": (P, 4 * H),
            "w_hr": (H, P),
            "b": (4 * H,),
            **({"peephole": (3, H)} if peephole else {}),
        }
        rng = np.random.default_rng(2)
        xs, h0, c0 = rng.standard_normal((B, T, D)), rng.standard_normal((B, P)), rng.standard_normal((B, H))
        result = seqjax.unroll(cell, params, jnp.asarray(xs), initial_carry=seqjax.LSTMCarry(h0, c0))
        hs, cs = lstmp_numpy(params, xs.swapaxes(0, 1), h0, c0)
        np.testing.assert_allclose(result.outputs, hs.swapaxes(0, 1), rtol=0, atol=1e-12)
        np.testing.assert_allclose(result.carry.hidden, hs[-1], rtol=0, atol=1e-12)
        np.testing.assert_allclose(result.carry.cell, cs[-1], rtol=0, atol=1e-12)
        zero = cell.init_carry(params, (B,))
        assert (zero.hidden.shape, zero.cell.shape) == ((B, P), (B, H))


def test_lstmp_stacked_and_both_ways_match_numpy():
    """layers.stacked: layer 2 reads layer 1's p outputs; init_layers + unroll_layers both ways: layer 2 reads the
    [2p] concatenation, and the backward direction is the NumPy loop over reversed time."""
    with jax.enable_x64(True):
        cell = seqjax.lstm(proj_size=P)
        xs = np.random.default_rng(3).standard_normal((B, T, D))
        zeros = np.zeros((B, P)), np.zeros((B, H))

        deep = layers.stacked([cell, cell])
        shapes = jax.eval_shape(lambda: deep.init_params(jax.random.key(0), D, H, jnp.float64))
        assert [s["w_ih"].shape for s in shapes] == [(D, 4 * H), (P, 4 * H)]
        assert deep.output_size == P
        params = (random_params(cell, 4), random_params(cell, 5, d=P))
        hs1, _ = lstmp_numpy(params[0], xs.swapaxes(0, 1), *zeros)
        hs2, _ = lstmp_numpy(params[1], hs1, *zeros)
        out = seqjax.unroll(deep, params, jnp.asarray(xs)).outputs
        np.testing.assert_allclose(out, hs2.swapaxes(0, 1), rtol=0, atol=1e-12)

        shapes = jax.eval_shape(lambda: layers.init_layers(cell, jax.random.split(jax.random.key(0), 2), D, H, True))
        assert [pair[1]["w_ih"].shape for pair in shapes] == [(D, 4 * H), (2 * P, 4 * H)]
        stack = [
            (random_params(cell, 6), random_params(cell, 7)),
            (random_params(cell, 8, 2 * P), random_params(cell, 9, 2 * P)),
        ]
        x_t = xs.swapaxes(0, 1)
        for forward, backward in stack:
            x_t = np.concatenate(
                [lstmp_numpy(forward, x_t, *zeros)[0], lstmp_numpy(backward, x_t[::-1], *zeros)[0][::-1]], axis=-1
            )
        out = layers.unroll_layers(cell, stack, jnp.asarray(xs), both_ways=True).outputs
        np.testing.assert_allclose(out, x_t.swapaxes(0, 1), rtol=0, atol=1e-12)


def test_lstmp_init_and_refusals(key):
    """W_hh's rows are the first p rows of each gate's [h, h] block (identity: eye(p, h)); the fused sequence, which
    knows no projection, is refused in one line; a projection wider than the cell is refused."""
    cell = seqjax.lstm(proj_size=P, recurrent_init=initializers.identity)
    params = jax.jit(lambda k: cell.init_params(k, D, H))(key)  # one compilation, not one per eager op
    np.testing.assert_array_equal(params["w_hh"], np.tile(np.eye(P, H, dtype=np.float32), (1, 4)))
    np.testing.assert_array_equal(params["b"], np.repeat(np.array([0.0, 1.0, 0.0, 0.0], np.float32), H))
    assert (
        cell.fused is None and cell.name == "lstmp" and seqjax.lstm(proj_size=P, peephole=True).name == "lstmp_peephole"
    )
    with pytest.raises(ValueError, match="has no fused recurrence"):
        seqjax.unroll(cell, params, jnp.zeros((B, T, D)), fused=True)
    with pytest.raises(ValueError, match="expected at most hidden_size = 4"):
        seqjax.lstm(proj_size=5).init_params(key, D, H)
    with pytest.raises(ValueError, match="proj_size=0"):
        seqjax.lstm(proj_size=0)


def test_the_task_model_reads_a_projected_lstm_and_the_models_that_cannot_refuse_it(tmp_path):
    """A user's file naming ``lstm(proj_size=2)``: the task grid's plain stack reads its 2 x 2 features both ways (its
    readout sized by them); the residual stack, seq2seq and the captioner, which need h features a step, refuse it
    in one line each."""
    from seqjax.models import captioner, seq2seq, task_model

    (tmp_path / "cells.py").write_text("import seqjax\n\nlstmp = seqjax.lstm(proj_size=2)\n")
    name = f"{tmp_path / 'cells.py'}:lstmp"
    config = task_model.TaskModelConfig(cell=name, inputs=3, tokens=False, num_classes=4, hidden=H,
                                        bidirectional=True)  # fmt: skip
    params = task_model.init_params(config, jax.random.key(0))
    assert config.width == 2 * P and params["out"]["kernel"].shape == (2 * P, 4)
    logits = task_model.apply(config, params, jnp.ones((B, T, 3)))
    assert logits.shape == (B, T, 4) and bool(jnp.all(jnp.isfinite(logits)))
    with pytest.raises(ValueError, match=r"^the residual stack \(each layer.s output added\) needs hidden_size = 4"):
        task_model.TaskModelConfig(cell=name, inputs=3, tokens=False, num_classes=4, hidden=H, body="residual")
    with pytest.raises(ValueError, match=r"^seq2seq.s attention needs hidden_size = 4 features a step; lstmp"):
        seq2seq.Seq2SeqConfig(src_vocab_size=5, tgt_vocab_size=5, cell=seqjax.lstm(proj_size=2), hidden_size=H)
    with pytest.raises(ValueError, match=r"^the captioner.s decoder needs hidden_size = 4 features a step"):
        captioner.CaptionerConfig(vocab_size=5, cell=seqjax.lstm(proj_size=2), hidden_size=H)
