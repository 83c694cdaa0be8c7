"""The encoder-decoder: teacher-forced loss and attention against a NumPy re-implementation, masking, padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import decoding
from seqjax.models import seq2seq

BOS, EOS = 1, 2
# Three sentences, right-padded with garbage (never 0, so a model reading the padding would change).
SRC = np.array([[4, 5, 6, 7], [8, 4, 9, 9], [5, 9, 9, 9]], np.int32)
SRC_LENGTHS = np.array([4, 2, 1], np.int32)
TGT = [[5, 6, 3], [4], [7, 8, 9, 3]]  # target tokens, without <bos>/<eos>


def teacher_forcing_batch(targets, steps, garbage=6):
    """``(tgt_in, tgt_out, tgt_lengths)``: ``<bos> y`` and ``y <eos>``, padded with ``garbage``."""
    tgt_in = np.full((len(targets), steps), garbage, np.int32)
    tgt_out = np.full((len(targets), steps), garbage, np.int32)
    for i, y in enumerate(targets):
        tgt_in[i, : len(y) + 1] = [BOS, *y]
        tgt_out[i, : len(y) + 1] = [*y, EOS]
    return tgt_in, tgt_out, np.array([len(y) + 1 for y in targets], np.int32)


def softmax(z):
    z = np.exp(z - z.max())
    return z / z.sum()


def reference(config, params, src, n, target):
    """A NumPy re-implementation (float64) of one pair with an Elman tanh cell and one layer:
    ``(the summed negative log-likelihood of y <eos>, the attention weights of every step [n + 1, n])``."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)

    def rnn(cp, h, x):
        return np.tanh(x @ cp["w_ih"] + cp["b"] + h @ cp["w_hh"])

    xs = p["src_embedding"][src[:n]]
    enc = p["encoder"][0]
    forward_params = enc[0] if config.bidirectional else enc
    h, forward = np.zeros(config.hidden_size), []
    for x in xs:
        h = rnn(forward_params, h, x)
        forward.append(h)
    memory, state = np.array(forward), h
    if config.bidirectional:
        h, backward = np.zeros(config.hidden_size), []
        for x in xs[::-1]:
            h = rnn(enc[1], h, x)
            backward.append(h)
        memory = np.concatenate([memory, np.array(backward[::-1])], axis=1)
        bridge = p["bridge"][0][0]
        state = np.tanh(np.concatenate([forward[-1], backward[-1]]) @ bridge["w"] + bridge["b"])
    att, dec = p["attention"], p["decoder"][0]
    feed, nll, alphas = np.zeros(config.hidden_size), 0.0, []
    for y_prev, y in zip([BOS, *target], [*target, EOS], strict=True):
        g = p["tgt_embedding"][y_prev]
        if config.attention == "bahdanau":
            scores = np.array([att["v"] @ np.tanh(state @ att["w_s"] + m @ att["w_h"]) for m in memory])
            alpha = softmax(scores)
            context = alpha @ memory
            state = rnn(dec, state, np.concatenate([g, context]))
            output = np.concatenate([state, context])
        elif config.attention == "luong":
            state = rnn(dec, state, np.concatenate([g, feed]))
            alpha = softmax(np.array([state @ (att["w_a"].T @ m) for m in memory]))  # s^T W_a m, W_a = w_a^T
            feed = output = np.tanh(np.concatenate([alpha @ memory, state]) @ att["w_c"])
        else:
            alpha = np.zeros(n)
            state = output = rnn(dec, state, g)
        logits = output @ p["out_w"] + p["out_b"]
        nll += np.log(np.sum(np.exp(logits - logits.max()))) + logits.max() - logits[y]
        alphas.append(alpha)
    return nll, np.array(alphas)


def init(config, seed=0):
    """Parameters shaped as ``init_params``'s, drawn N(0, 0.5^2) by NumPy (compiling the initialisers would
    cost more than these tests; the model's values do not depend on how its parameters were drawn)."""
    shapes = jax.eval_shape(lambda: seq2seq.init_params(config, jax.random.key(0)))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: jnp.asarray(0.5 * rng.normal(size=a.shape), a.dtype), shapes)


def tiny(attention, bidirectional=False, cell="rnn", num_layers=1):
    return seq2seq.Seq2SeqConfig(src_vocab_size=10, tgt_vocab_size=10, cell=cell, num_layers=num_layers,
                                 hidden_size=5, embed_size=3, bidirectional=bidirectional, attention=attention,
                                 attention_size=4, dropout=0.3)  # fmt: skip


@pytest.mark.parametrize(
    ("attention", "bidirectional"), [("none", False), ("bahdanau", True), ("luong", False)], ids=str
)
def test_teacher_forced_loss_and_attention_match_a_numpy_loop(attention, bidirectional):
    config = tiny(attention, bidirectional)
    params = init(config)
    tgt_in, tgt_out, tgt_lengths = teacher_forcing_batch(TGT, 5)

    @jax.jit
    def run(params):
        memory, state = seq2seq.encode(config, params, SRC, SRC_LENGTHS)
        logits = seq2seq.teacher_forced(config, params, memory, state, tgt_in, tgt_lengths)
        step = seq2seq.decode_step(config, params)
        _, log_probs, alpha = step(seq2seq.DecodeCarry(state, memory), jnp.full((3,), BOS, jnp.int32))
        return seq2seq.loss(logits, tgt_out, tgt_lengths), log_probs, alpha  # alpha: the first step's weights

    got, log_probs, alpha = run(params)
    refs = [reference(config, params, SRC[i], SRC_LENGTHS[i], TGT[i]) for i in range(3)]
    expected = sum(nll for nll, _ in refs) / np.sum(tgt_lengths)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert alpha.shape == (3, 4) and np.all(np.isfinite(log_probs))
    for i, (_, alphas) in enumerate(refs):
        n = SRC_LENGTHS[i]
        np.testing.assert_allclose(alpha[i, :n], alphas[0], rtol=1e-5, atol=1e-7)
        assert np.all(np.asarray(alpha[i, n:]) == 0.0)  # masked positions: exactly zero
        if attention != "none":
            np.testing.assert_allclose(np.sum(alpha[i]), 1.0, rtol=1e-6)


def test_a_pair_ignores_its_padding_and_batch_mates():
    """Two LSTM layers, a bidirectional encoder (bridged) and Bahdanau attention: the logits and the greedy
    translation of a pair alone equal those of the same pair padded among others."""
    config = tiny("bahdanau", bidirectional=True, cell="lstm", num_layers=2)
    params = init(config)
    params["out_b"] = 3.0 * params["out_b"]  # varied translations from random weights

    @jax.jit
    def run(src, src_lengths, tgt_in, tgt_lengths):
        logits = seq2seq.apply(config, params, src, src_lengths, tgt_in, tgt_lengths)
        step = seq2seq.decode_step(config, params)
        decoded = decoding.greedy(step, seq2seq.start(config, params, src, src_lengths), bos=BOS, eos=EOS, max_len=6)
        return logits, decoded.tokens, decoded.aux

    pair_src, pair_tgt = [4, 5, 6], [7, 8]
    tgt_in, _, tgt_lengths = teacher_forcing_batch([pair_tgt], 3)
    alone = run(np.array([pair_src], np.int32), np.array([3], np.int32), tgt_in, tgt_lengths)
    src = np.array([[9, 9, 9, 9, 9, 9], [*pair_src, 8, 8, 8], [7, 3, 8, 8, 8, 8]], np.int32)
    tgt_in, _, tgt_lengths = teacher_forcing_batch([[3, 3, 3, 3], pair_tgt, [5]], 6, garbage=9)
    batch = run(src, np.array([6, 3, 2], np.int32), tgt_in, tgt_lengths)
    np.testing.assert_allclose(batch[0][1, :3], alone[0][0], atol=1e-5)  # logits
    np.testing.assert_array_equal(batch[1][1], alone[1][0])  # greedy tokens
    np.testing.assert_allclose(batch[2][1, :, :3], alone[2][0], atol=1e-6)  # attention weights
    assert np.all(np.asarray(batch[2][1, :, 3:]) == 0.0)
    assert np.abs(np.asarray(batch[0][0, :3] - alone[0][0])).max() > 1e-3  # another pair: other logits
