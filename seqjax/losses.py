"""Cross-entropy and accuracy over the scored positions of a batch: the definitions the models share.

For logits ``[..., V]``, integer targets ``[...]`` and a bool mask ``[...]`` of the scored positions::

    nll_i    = -log softmax(logits_i)[y_i]                          nats, in float32 whatever the logits' dtype
    CE       = sum_i m_i nll_i / max(1, sum_i m_i)
    accuracy = sum_i m_i [argmax logits_i = y_i] / max(1, sum_i m_i)

An unscored position is left out by ``where``, never multiplied by 0: an infinite loss there cannot make the mean
NaN. Right-padded sequences are scored with ``seqjax.attention.masks.length_mask``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def token_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """``-log softmax(logits)[target]`` per position: ``[..., V], [...] -> [...]``, in nats."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]


def _count(mask: jax.Array) -> jax.Array:
    return jnp.maximum(jnp.sum(mask), 1).astype(jnp.float32)


def masked_cross_entropy(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
    """The mean ``token_nll`` over the positions where ``mask`` is True (module docstring)."""
    return jnp.sum(jnp.where(mask, token_nll(logits, targets), 0.0)) / _count(mask)


def masked_accuracy(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
    """The fraction of the positions where ``mask`` is True whose target is the arg-max of ``logits``."""
    right = (jnp.argmax(logits, axis=-1) == targets) & mask
    return jnp.sum(right).astype(jnp.float32) / _count(mask)
