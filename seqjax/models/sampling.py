"""Sampling from a trained language model one token at a time.

Given a prime ``w_1..w_P``, the model reads it (teacher-forced) and then, for ``i = 1..length``,
draws ``w_{P+i}`` from ``softmax(logits / temperature)`` restricted to the ``top_k`` most likely
tokens (all when ``top_k = 0``), or takes the arg max (``greedy``), and feeds it back as the next
input. Step ``i`` draws with ``fold_in(key, i)``, so the same key gives the same text.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from seqjax.models import lm


def next_token(logits: jax.Array, key: jax.Array, temperature: float, top_k: int, greedy: bool) -> jax.Array:
    """One token id from ``logits [V]``."""
    if greedy:
        return jnp.argmax(logits)
    scaled = logits / temperature
    if top_k:
        threshold = jax.lax.top_k(scaled, top_k)[0][-1]
        scaled = jnp.where(scaled >= threshold, scaled, -jnp.inf)
    return jax.random.categorical(key, scaled)


@functools.partial(jax.jit, static_argnames=("config", "length", "top_k", "greedy"))
def sample(
    config: lm.LMConfig,
    params,
    prime: jax.Array,
    key: jax.Array,
    *,
    length: int,
    temperature: float = 1.0,
    top_k: int = 0,
    greedy: bool = False,
) -> jax.Array:
    """``[length]`` token ids that continue ``prime [P]`` (P >= 1)."""
    carries = lm.init_carry(config, params, 1)
    logits, carries = lm.apply(config, params, carries, prime[None, :])

    def step(state, i):
        carries, last_logits = state
        token = next_token(last_logits, jax.random.fold_in(key, i), temperature, top_k, greedy)
        logits, carries = lm.apply(config, params, carries, token[None, None])
        return (carries, logits[0, -1]), token

    _, tokens = jax.lax.scan(step, (carries, logits[0, -1]), jnp.arange(length))
    return tokens
