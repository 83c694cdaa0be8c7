"""Greedy and beam-search decoding against NumPy references: a step-by-step loop, a hand-built model and
brute-force enumeration of every hypothesis."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import decoding

BOS, EOS = 0, 1  # token 0 is also the padding; it is a valid input, never a special output


EOS_GAIN, EOS_TIME = 2.0, 4.0


def toy_params(seed, vocab, hidden=3, memory=4):
    """A tiny recurrent "decoder" (``toy_step``): the carry matters, and every step has an attention-like aux."""
    rng = np.random.default_rng(seed)
    shapes = {"table": (vocab, vocab), "embed": (vocab, hidden), "recur": (hidden, hidden), "out": (hidden, vocab)}
    scales = {"table": 0.5, "embed": 1.0, "recur": 2.0, "out": 1.0}
    params = {name: scales[name] * rng.standard_normal(shape) for name, shape in shapes.items()}
    params["attend"] = rng.standard_normal((hidden, memory))
    return {name: jnp.asarray(a, jnp.float32) for name, a in params.items()}


def toy_carry(seed, batch, hidden=3):
    """``(h [b, hidden], clock [b])``: rows with a later clock tend to emit EOS sooner."""
    h = np.random.default_rng(seed).standard_normal((batch, hidden))
    return jnp.asarray(h, jnp.float32), jnp.asarray(np.linspace(-3.0, 3.0, batch), jnp.float32)


def toy_step(params):
    """h' = tanh(h R + E[y]); c' = c + 1; logits = table[y] + h' O + g (c' - t0) [v == EOS]; aux = softmax(h' A)."""

    def step(carry, tokens):
        h, clock = carry
        h = jnp.tanh(h @ params["recur"] + params["embed"][tokens])
        clock = clock + 1.0
        logits = params["table"][tokens] + h @ params["out"]
        logits = logits.at[:, EOS].add(EOS_GAIN * (clock - EOS_TIME))
        return (h, clock), jax.nn.log_softmax(logits, axis=-1), jax.nn.softmax(h @ params["attend"], axis=-1)

    return step


def np_step(params, carry, token):
    """``toy_step`` for one example in NumPy float64: (carry', log_probs [V], aux [S])."""
    p = {name: np.asarray(a, np.float64) for name, a in params.items()}
    h, clock = carry
    h = np.tanh(h @ p["recur"] + p["embed"][token])
    clock = clock + 1.0
    logits = p["table"][token] + h @ p["out"]
    logits[EOS] += EOS_GAIN * (clock - EOS_TIME)
    log_probs = logits - logits.max() - np.log(np.sum(np.exp(logits - logits.max())))
    scores = h @ p["attend"]
    aux = np.exp(scores - scores.max())
    return (h, clock), log_probs, aux / aux.sum()


def np_rows(carry):
    """The rows of a batched toy carry, as NumPy float64 carries of one example."""
    h, clock = (np.asarray(a, np.float64) for a in carry)
    return [(h[i], clock[i]) for i in range(len(clock))]


def np_greedy(params, carry, max_len):
    """Greedy decoding of one example, written as a plain loop: (tokens, length, score, aux)."""
    tokens, auxes, score, token = [], [], 0.0, BOS
    for _ in range(max_len):
        carry, log_probs, aux = np_step(params, carry, token)
        token = int(np.argmax(log_probs))
        tokens.append(token)
        auxes.append(aux)
        score += log_probs[token]
        if token == EOS:
            break
    length = len(tokens)
    pad = max_len - length
    aux = np.concatenate([np.stack(auxes), np.zeros((pad, auxes[0].size))])
    return tokens + [0] * pad, length, score, aux


def np_all_hypotheses(params, carry, max_len):
    """Every hypothesis of one example: {tokens: log P}; a hypothesis ends at EOS or after max_len tokens."""
    found = {}

    def expand(carry, prefix, log_prob):
        if len(prefix) == max_len or (prefix and prefix[-1] == EOS):
            found[tuple(prefix)] = log_prob
            return
        carry, log_probs, _ = np_step(params, carry, prefix[-1] if prefix else BOS)
        for v, lp in enumerate(log_probs):
            expand(carry, [*prefix, v], log_prob + lp)

    expand(carry, [], 0.0)
    return found


def gnmt_penalty(length, alpha):
    return ((5 + length) / 6) ** alpha


# One compilation per shape, shared by the tests; results come back as NumPy arrays.
@functools.partial(jax.jit, static_argnames="max_len")
def _greedy(params, carry, max_len):
    return decoding.greedy(toy_step(params), carry, bos=BOS, eos=EOS, max_len=max_len)


@functools.partial(jax.jit, static_argnames=("beam_size", "max_len"))  # alpha is traced: no recompilation
def _beam(params, carry, beam_size, max_len, alpha):
    return decoding.beam_search(
        toy_step(params), carry, bos=BOS, eos=EOS, beam_size=beam_size, max_len=max_len, length_penalty=alpha
    )


def run_greedy(params, carry, max_len):
    return jax.tree.map(np.asarray, _greedy(params, carry, max_len))


def run_beam(params, carry, beam_size, max_len, alpha):
    return jax.tree.map(np.asarray, _beam(params, carry, beam_size, max_len, alpha))


VOCAB, BATCH, MAX_LEN = 5, 6, 6


@pytest.fixture
def model():
    return toy_params(0, VOCAB), toy_carry(1, BATCH)


# -- greedy --------------------------------------------------------------------------------------------------------


def test_greedy_matches_a_plain_loop_with_eos_padding_and_aux(model):
    params, carry = model
    out = run_greedy(params, carry, MAX_LEN)

    refs = [np_greedy(params, row, MAX_LEN) for row in np_rows(carry)]
    lengths = [ref[1] for ref in refs]
    assert min(lengths) < MAX_LEN - 1 and max(lengths) == MAX_LEN  # some rows stop at EOS, one runs to the end
    assert out.tokens.dtype == jnp.int32 and out.lengths.dtype == jnp.int32 and out.score.dtype == jnp.float32
    np.testing.assert_array_equal(out.tokens, [ref[0] for ref in refs])  # PAD after EOS
    np.testing.assert_array_equal(out.lengths, lengths)
    np.testing.assert_allclose(out.score, [ref[2] for ref in refs], rtol=1e-5)  # frozen after EOS
    assert out.aux.shape == (BATCH, MAX_LEN, 4)
    np.testing.assert_allclose(out.aux, np.stack([ref[3] for ref in refs]), atol=1e-6)  # zero after EOS
    assert out.beams is None


def test_greedy_without_aux_and_with_a_pytree_carry():
    # A two-leaf carry; the step counts its own steps and always prefers token (count + 2) % 4: no EOS ever.
    def step(carry, tokens):
        count, _ = carry
        favourite = (count + 2) % 4
        log_probs = jnp.log(jnp.where(jnp.arange(4)[None, :] == favourite[:, None], 0.7, 0.1))
        return (count + 1, tokens), log_probs

    carry = (jnp.array([0, 1], jnp.int32), jnp.zeros((2,), jnp.int32))
    out = jax.jit(lambda carry: decoding.greedy(step, carry, bos=3, eos=EOS, max_len=3))(carry)
    # Row 0 prefers 2, 3, 0 (no EOS); row 1 prefers 3, 0, 1 = EOS at the third step.
    np.testing.assert_array_equal(out.tokens, [[2, 3, 0], [3, 0, 1]])
    np.testing.assert_array_equal(out.lengths, [3, 3])
    np.testing.assert_allclose(out.score, [3 * math.log(0.7)] * 2, rtol=1e-6)
    assert out.aux is None


# -- beam search ---------------------------------------------------------------------------------------------------


def test_beam_size_one_is_greedy(model):
    params, carry = model
    greedy = run_greedy(params, carry, MAX_LEN)
    beam = run_beam(params, carry, 1, MAX_LEN, 0.0)
    assert greedy.lengths.min() < MAX_LEN  # the EOS path is exercised
    np.testing.assert_array_equal(beam.tokens, greedy.tokens)
    np.testing.assert_array_equal(beam.lengths, greedy.lengths)
    np.testing.assert_array_equal(beam.score, greedy.score)


# A hand-built model over {0: pad, 1: bos, 2: eos, 3: a, 4: b}; the next token depends on the previous one only.
HAND_PROBS = np.array([
    [0.2, 0.2, 0.2, 0.2, 0.2],  # after pad (never read for a live hypothesis)
    [0.0, 0.0, 0.0, 0.6, 0.4],  # after bos: a 0.6, b 0.4
    [0.2, 0.2, 0.2, 0.2, 0.2],  # after eos (never read for a live hypothesis)
    [0.1, 0.1, 0.3, 0.25, 0.25],  # after a: the best continuation, eos, has only 0.3
    [0.0, 0.0, 0.9, 0.05, 0.05],  # after b: eos 0.9
])  # fmt: skip


def hand_step(carry, tokens):
    with np.errstate(divide="ignore"):
        table = jnp.asarray(np.log(HAND_PROBS), jnp.float32)  # log 0 = -inf: impossible tokens
    return carry, table[tokens]


def test_beam_search_finds_what_greedy_misses():
    carry = jnp.zeros((1, 1), jnp.float32)  # the model has no state; the carry only sets b
    greedy = jax.jit(lambda carry: decoding.greedy(hand_step, carry, bos=1, eos=2, max_len=3))(carry)
    # Greedy: a (0.6), then eos (0.3): P = 0.18.
    np.testing.assert_array_equal(greedy.tokens, [[3, 2, 0]])
    np.testing.assert_array_equal(greedy.lengths, [2])
    np.testing.assert_allclose(greedy.score, [math.log(0.18)], rtol=1e-6)

    beam = jax.jit(lambda carry: decoding.beam_search(hand_step, carry, bos=1, eos=2, beam_size=2, max_len=3))(carry)
    # Beam 2 keeps b (0.4) and finds b eos: P = 0.36; a eos (0.18) is the runner-up; both frozen at step 3.
    np.testing.assert_array_equal(beam.tokens, [[4, 2, 0]])
    np.testing.assert_array_equal(beam.lengths, [2])
    np.testing.assert_allclose(beam.score, [math.log(0.36)], rtol=1e-6)
    np.testing.assert_array_equal(beam.beams.tokens, [[[4, 2, 0], [3, 2, 0]]])
    np.testing.assert_allclose(beam.beams.log_probs, [[math.log(0.36), math.log(0.18)]], rtol=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_equals_brute_force_enumeration(alpha):
    vocab, max_len = 3, 3
    params, carry = toy_params(45, vocab), toy_carry(145, 3)  # a model where alpha = 1 changes a winner
    out = run_beam(params, carry, vocab**max_len, max_len, alpha)
    winners, raw_winners = [], []
    for row, example in enumerate(np_rows(carry)):
        found = np_all_hypotheses(params, example, max_len)
        assert len(found) == 1 + 2 + 2 * 2 * 3  # EOS; x EOS; x y z (x, y not EOS)
        scores = {seq: lp / gnmt_penalty(len(seq), alpha) for seq, lp in found.items()}
        ranked = sorted(scores, key=scores.get, reverse=True)
        best = ranked[0]
        winners.append(best)
        raw_winners.append(max(found, key=found.get))
        np.testing.assert_array_equal(out.tokens[row], list(best) + [0] * (max_len - len(best)))
        assert int(out.lengths[row]) == len(best)
        np.testing.assert_allclose(out.score[row], scores[best], rtol=1e-5)
        # Nothing was pruned: the finite beams are exactly the enumerated hypotheses, in the same order.
        beams = out.beams
        live = np.isfinite(np.asarray(beams.scores[row]))
        assert live.sum() == len(found) and live[: len(found)].all()
        for j, seq in enumerate(ranked):
            np.testing.assert_array_equal(beams.tokens[row, j], list(seq) + [0] * (max_len - len(seq)))
            assert int(beams.lengths[row, j]) == len(seq)
            np.testing.assert_allclose(beams.log_probs[row, j], found[seq], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(beams.scores[row, j], scores[seq], rtol=1e-5, atol=1e-6)
    assert len({len(seq) for seq in winners}) > 1  # winners of different lengths: EOS handling matters
    if alpha:  # the penalty matters here: some row's winner differs from the raw-log-prob winner
        assert raw_winners != winners


def test_rows_do_not_depend_on_their_batch_mates(model):
    params, carry = model
    # The same rows in another order, with rows 0 and 1 of the new batch replaced by strangers (same shapes:
    # no recompilation).
    order = np.arange(BATCH)[::-1]
    h, clock = (np.asarray(a)[order] for a in carry)
    h[:2] = np.random.default_rng(7).standard_normal((2, h.shape[1]))
    clock[:2] = [3.0, -1.0]
    mates = (jnp.asarray(h), jnp.asarray(clock))
    for run in (lambda c: run_greedy(params, c, MAX_LEN), lambda c: run_beam(params, c, 3, MAX_LEN, 0.6)):
        first, second = run(carry), run(mates)
        assert first.lengths.min() < MAX_LEN - 1 and first.lengths.max() == MAX_LEN  # rows end at different steps
        for new_row, row in enumerate(order[2:], start=2):
            np.testing.assert_array_equal(first.tokens[row], second.tokens[new_row])
            assert first.lengths[row] == second.lengths[new_row]
            np.testing.assert_allclose(first.score[row], second.score[new_row], rtol=1e-6)
        # After EOS: padding only.
        for tokens, length in zip(first.tokens, first.lengths, strict=True):
            assert (tokens[length:] == 0).all() and (length == MAX_LEN or tokens[length - 1] == EOS)


def test_bad_arguments_raise():
    carry = jnp.zeros((1, 1), jnp.float32)
    with pytest.raises(ValueError, match="max_len"):
        decoding.greedy(hand_step, carry, bos=1, eos=2, max_len=0)
    with pytest.raises(ValueError, match="beam_size"):
        decoding.beam_search(hand_step, carry, bos=1, eos=2, beam_size=0, max_len=2)
    with pytest.raises(ValueError, match="length_penalty"):
        decoding.beam_search(hand_step, carry, bos=1, eos=2, beam_size=2, max_len=2, length_penalty=-1.0)
