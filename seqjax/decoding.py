"""Autoregressive decoding (greedy and beam search) over any pure step function.

A decoder is seen only through its step::

    carry, log_probs = step(carry, tokens)            tokens [b] int32 -> log_probs [b, V] float32
    carry, log_probs, aux = step(carry, tokens)       optionally with per-step extras (e.g. attention [b, S])

``carry`` is any pytree whose leaves all have the batch axis b first (a model binds its parameters and
its encoder outputs into ``step`` by closure). Decoding starts by feeding ``bos`` to every row; a row
ends when it emits ``eos`` (which is kept and counted) or after ``max_len`` tokens. After its end a row
emits padding (0) and its score no longer changes. Each function is one ``jax.lax.scan`` over ``max_len``
steps; ``bos``, ``eos``, ``beam_size`` and ``max_len`` are Python ints, so the caller jits by closure::

    decode = jax.jit(lambda carry: greedy(step, carry, bos=1, eos=2, max_len=50))

Dimension legend: b batch, k beams, V vocabulary, T = max_len.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

PAD = 0

Carry = Any
Step = Callable[[Carry, jax.Array], tuple]


class Beams(NamedTuple):
    """Every hypothesis of the final beam, best first.

    Attributes:
      tokens: ``[b, k, T]`` int32, padded with 0 after ``eos``.
      lengths: ``[b, k]`` int32, tokens up to and including ``eos`` (T if none).
      scores: ``[b, k]`` float32, the ranking score ``log P / lp(length)`` (``beam_search``).
      log_probs: ``[b, k]`` float32, the raw ``log P`` of each hypothesis.
      Beams that were never filled (more beams than hypotheses) have scores ``-inf``.
    """

    tokens: jax.Array
    lengths: jax.Array
    scores: jax.Array
    log_probs: jax.Array


class Decoded(NamedTuple):
    """One decoded sequence per row.

    Attributes:
      tokens: ``[b, T]`` int32, the emitted tokens, 0 after ``eos``.
      lengths: ``[b]`` int32, tokens up to and including ``eos`` (T if the row never emitted it).
      score: ``[b]`` float32. Greedy: ``sum_{i < length} log p(y_i | y_<i)``. Beam search: that sum
        divided by the length penalty (``beam_search``).
      aux: greedy only, when ``step`` returns a third output: each step's aux stacked along time,
        ``[b, T, ...]``, zero at the steps after the row's ``eos``; otherwise ``None``.
      beams: beam search only: all final hypotheses (``Beams``); otherwise ``None``.
    """

    tokens: jax.Array
    lengths: jax.Array
    score: jax.Array
    aux: Any = None
    beams: Beams | None = None


def _call(step: Step, carry: Carry, tokens: jax.Array) -> tuple[Carry, jax.Array, Any]:
    """``step`` with its optional aux made explicit (``None`` when it returns two outputs)."""
    out = step(carry, tokens)
    if len(out) == 2:
        return out[0], out[1], None
    if len(out) == 3:
        return out
    raise ValueError(f"step must return (carry, log_probs) or (carry, log_probs, aux), got {len(out)} outputs")


def _batch_size(carry: Carry) -> int:
    leaves = jax.tree.leaves(carry)
    if not leaves:
        raise ValueError("the carry must have at least one array leaf with the batch axis first")
    return leaves[0].shape[0]


def _check(max_len: int, beam_size: int = 1) -> None:
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")


def greedy(step: Step, carry: Carry, *, bos: int, eos: int, max_len: int) -> Decoded:
    """Greedy decoding: at each step the most probable token (the lowest id among ties).

    With ``y_0 = bos`` and ``done_0 = False``, for ``i = 1..T``::

        carry_i, l_i = step(carry_{i-1}, y_{i-1})          l_i [b, V] log-probabilities
        w_i      = argmax_v l_i[v]
        y_i      = PAD if done_{i-1} else w_i
        score   += 0 if done_{i-1} else l_i[w_i]
        done_i   = done_{i-1} or w_i == eos

    Args:
      step: ``(carry, tokens [b] int32) -> (carry, log_probs [b, V][, aux])`` (module docstring).
      carry: the initial carry, every leaf ``[b, ...]``.
      bos: the first input token.
      eos: the token that ends a row.
      max_len: T, the number of steps.

    Returns:
      ``Decoded(tokens [b, T], lengths [b], score [b], aux [b, T, ...] or None)``.
    """
    _check(max_len)
    batch = _batch_size(carry)

    def body(state, _):
        carry, tokens, done, score, length = state
        carry, log_probs, aux = _call(step, carry, tokens)
        best = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
        best_log_prob = jnp.take_along_axis(log_probs, best[:, None], axis=-1)[:, 0]
        emitted = jnp.where(done, PAD, best)
        score = score + jnp.where(done, 0.0, best_log_prob).astype(score.dtype)
        length = length + (~done).astype(jnp.int32)
        if aux is not None:
            aux = jax.tree.map(lambda a: jnp.where(done.reshape((-1,) + (1,) * (a.ndim - 1)), 0, a), aux)
        return (carry, emitted, done | (emitted == eos), score, length), (emitted, aux)

    start = (
        carry,
        jnp.full((batch,), bos, jnp.int32),
        jnp.zeros((batch,), bool),
        jnp.zeros((batch,), jnp.float32),
        jnp.zeros((batch,), jnp.int32),
    )
    (_, _, _, score, lengths), (tokens, aux) = jax.lax.scan(body, start, None, length=max_len)
    aux = None if aux is None else jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), aux)
    return Decoded(jnp.swapaxes(tokens, 0, 1), lengths, score, aux)


def length_penalty_of(lengths: jax.Array, alpha: float | jax.Array) -> jax.Array:
    """GNMT's length penalty ``lp(n) = ((5 + n) / 6) ** alpha`` (Wu et al. 2016, eq. 14), float32; 1 when alpha = 0."""
    return ((5.0 + lengths.astype(jnp.float32)) / 6.0) ** jnp.asarray(alpha, jnp.float32)


def beam_search(
    step: Step,
    carry: Carry,
    *,
    bos: int,
    eos: int,
    beam_size: int,
    max_len: int,
    length_penalty: float = 0.0,
) -> Decoded:
    """Beam search with k = ``beam_size`` hypotheses per row, rows searched independently.

    The carry is tiled to ``[b k, ...]`` (row r's beams are rows ``r k .. r k + k - 1``). Each beam j holds
    a prefix ``y^j``, its log-probability ``s_j = log P(y^j)``, its length and whether it ended with
    ``eos``. At the start only beam 0 is live (``s_0 = 0``, ``s_{j>0} = -inf``), so the first step
    expands a single ``bos`` prefix. For ``i = 1..T``, with ``l_i = step(carry_{i-1}, y_{i-1})`` ``[b k, V]``::

        cand[j, v] = s_j + l_i[j, v]                     live beam j: every continuation v
        cand[j, v] = s_j if v == 0 else -inf             finished beam j: kept as it is, emitting PAD
        (s, parent, v) = top_k over the k V candidates of each row
        prefix, carry, length, finished  <- those of the parent beam (carries gathered by parent index)
        y_i = v (PAD for a finished parent); length += 1 and finished = (v == eos) for a live parent

    A finished hypothesis thus gets no further log-probability and is never extended. Ranking during
    the search is by ``s`` (ties: the lower beam, then the lower token id, first); at the end each
    hypothesis, finished or not (then of length T), is scored::

        score = s / lp(length),    lp(n) = ((5 + n) / 6) ** alpha      (GNMT, Wu et al. 2016)

    with ``alpha = length_penalty``; ``alpha = 0`` leaves ``score = s``, the raw sum of log-probabilities.
    The best-scoring beam of each row is returned. With ``beam_size = 1`` this is ``greedy``; with k at least
    the number of possible hypotheses (e.g. ``V ** T``) nothing is ever pruned, so the search is exact.

    Args:
      step: ``(carry, tokens [b k] int32) -> (carry, log_probs [b k, V][, aux])``; aux is ignored.
      carry: the initial carry for b rows, every leaf ``[b, ...]``; tiled to ``[b k, ...]`` here.
      bos: the first input token.
      eos: the token that ends a hypothesis.
      beam_size: k.
      max_len: T, the number of steps.
      length_penalty: alpha >= 0, a Python number or a traced scalar (sweeping alpha under ``jit`` then
        needs no recompilation).

    Returns:
      ``Decoded(tokens [b, T], lengths [b], score [b], beams=Beams(...) with all k hypotheses best first)``.
    """
    _check(max_len, beam_size)
    if isinstance(length_penalty, (int, float)) and length_penalty < 0:
        raise ValueError(f"length_penalty must be >= 0, got {length_penalty}")
    batch, k = _batch_size(carry), beam_size
    carry = jax.tree.map(lambda a: jnp.repeat(a, k, axis=0), carry)  # [b k, ...]
    rows = jnp.arange(batch)[:, None]  # [b, 1]

    def body(state, i):
        carry, inputs, prefixes, log_probs, lengths, finished = state
        carry, step_log_probs, _ = _call(step, carry, inputs.reshape(batch * k))
        vocab = step_log_probs.shape[-1]
        step_log_probs = step_log_probs.reshape(batch, k, vocab)
        keep = jnp.where(jnp.arange(vocab) == PAD, 0.0, -jnp.inf).astype(step_log_probs.dtype)  # [V]
        step_log_probs = jnp.where(finished[:, :, None], keep[None, None, :], step_log_probs)
        candidates = (log_probs[:, :, None] + step_log_probs).reshape(batch, k * vocab)
        log_probs, chosen = jax.lax.top_k(candidates, k)  # [b, k]
        parent, token = chosen // vocab, (chosen % vocab).astype(jnp.int32)
        parent_finished = jnp.take_along_axis(finished, parent, axis=1)
        token = jnp.where(parent_finished, PAD, token)
        lengths = jnp.take_along_axis(lengths, parent, axis=1) + (~parent_finished).astype(jnp.int32)
        finished = parent_finished | (token == eos)
        prefixes = jnp.take_along_axis(prefixes, parent[:, :, None], axis=1).at[:, :, i].set(token)
        flat_parent = (rows * k + parent).reshape(batch * k)
        carry = jax.tree.map(lambda a: a[flat_parent], carry)
        return (carry, token, prefixes, log_probs, lengths, finished), None

    start = (
        carry,
        jnp.full((batch, k), bos, jnp.int32),
        jnp.zeros((batch, k, max_len), jnp.int32),
        jnp.broadcast_to(jnp.where(jnp.arange(k) == 0, 0.0, -jnp.inf).astype(jnp.float32), (batch, k)),
        jnp.zeros((batch, k), jnp.int32),
        jnp.zeros((batch, k), bool),
    )
    (_, _, prefixes, log_probs, lengths, _), _ = jax.lax.scan(body, start, jnp.arange(max_len))
    scores = log_probs / length_penalty_of(lengths, length_penalty)  # lp = 1 exactly when alpha = 0
    order = jnp.argsort(-scores, axis=1, stable=True)  # best first
    beams = Beams(
        jnp.take_along_axis(prefixes, order[:, :, None], axis=1),
        jnp.take_along_axis(lengths, order, axis=1),
        jnp.take_along_axis(scores, order, axis=1),
        jnp.take_along_axis(log_probs, order, axis=1),
    )
    return Decoded(beams.tokens[:, 0], beams.lengths[:, 0], beams.scores[:, 0], None, beams)
