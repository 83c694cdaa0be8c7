"""Sampling from a trained language model one token at a time.

Given a prime ``w_1..w_P``, the model reads it (teacher-forced) and then, for ``i = 1..length``,
draws ``w_{P+i}`` from ``softmax(logits / temperature)`` restricted to the ``top_k`` most likely
tokens (all when ``top_k = 0``), or takes the arg max (``greedy``), and feeds it back as the next
input. Step ``i`` draws with ``fold_in(key, i)``, so the same key gives the same text.

A recurrent LM (``lm.LMConfig``) carries its state from token to token. A Transformer LM
(``transformer_lm.TransformerLMConfig``) has no state: it rereads a window of the last ``context``
tokens at every step (a prime longer than that is cut to its last ``context`` tokens; once the window
is full it slides by one token per step), which costs ``O(context^2)`` per token and no cache.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from seqjax.models import lm, transformer_lm


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
    config: lm.LMConfig | transformer_lm.TransformerLMConfig,
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
    if isinstance(config, transformer_lm.TransformerLMConfig):
        return _sample_in_windows(config, params, prime, key, length, temperature, top_k, greedy)
    carries = lm.init_carry(config, params, 1)
    logits, carries = lm.apply(config, params, carries, prime[None, :])

    def step(state, i):
        carries, last_logits = state
        token = next_token(last_logits, jax.random.fold_in(key, i), temperature, top_k, greedy)
        logits, carries = lm.apply(config, params, carries, token[None, None])
        return (carries, logits[0, -1]), token

    _, tokens = jax.lax.scan(step, (carries, logits[0, -1]), jnp.arange(length))
    return tokens


def _sample_in_windows(
    config: transformer_lm.TransformerLMConfig,
    params,
    prime: jax.Array,
    key: jax.Array,
    length: int,
    temperature: float,
    top_k: int,
    greedy: bool,
) -> jax.Array:
    """``sample`` for a Transformer LM: a ``[context]`` window holding the last ``count`` tokens, left-aligned.

    The causal mask makes the logits at ``count - 1`` independent of the unused slots after it.
    """
    context = config.context
    kept = min(prime.shape[0], context)
    window = jnp.zeros((context,), prime.dtype).at[:kept].set(prime[prime.shape[0] - kept :])

    def step(state, i):
        window, count = state
        logits = transformer_lm.apply(config, params, window[None, :])[0, count - 1]
        token = next_token(logits, jax.random.fold_in(key, i), temperature, top_k, greedy).astype(window.dtype)
        slid = jnp.roll(window, -1).at[context - 1].set(token)
        window = jnp.where(count == context, slid, window.at[jnp.minimum(count, context - 1)].set(token))
        return (window, jnp.minimum(count + 1, context)), token

    _, tokens = jax.lax.scan(step, (window, jnp.asarray(kept, jnp.int32)), jnp.arange(length))
    return tokens
