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
    """``-log softmax(logits)[target]`` per position: ``[..., V], [...] -> [...]``, in nats.

    With ``s = logits - max(logits)`` (the max held constant), ``e = exp(s)`` and ``S = sum(e)``::

        nll = -(s_y - log S)                       the arithmetic of jax.nn.log_softmax, then the target's entry
        d nll / d logits = -onehot(y) + e / S      one elementwise pass over the logits: (-g) onehot + (g / S) e

    The derivative is given as a JVP (``jax.custom_jvp``) whose transpose is that one pass: autodiff of the
    gather would scatter into a zero [..., V] array first, and of ``log_softmax`` take further passes. Values and
    gradients are bit-identical to ``-take_along_axis(log_softmax(logits), y)``; forward mode works too.
    """
    return _nll(logits.astype(jnp.float32), targets)


@jax.custom_jvp
def _nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    return _nll_parts(logits, targets)[0]


def _nll_parts(logits, targets):
    shifted = logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    exps = jnp.exp(shifted)
    total = jnp.sum(exps, axis=-1, keepdims=True)
    picked = jnp.take_along_axis(shifted, targets[..., None], axis=-1)
    return -(picked - jnp.log(total))[..., 0], exps, total


@_nll.defjvp
def _nll_jvp(primals, tangents):
    logits, targets = primals
    d_logits, _ = tangents  # integer targets have no tangent
    nll, exps, total = _nll_parts(logits, targets)
    vocabulary = jax.lax.broadcasted_iota(targets.dtype, logits.shape, logits.ndim - 1)
    onehot = (vocabulary == targets[..., None]).astype(logits.dtype)
    d_picked = jnp.sum(onehot * d_logits, axis=-1)
    d_log_total = jnp.sum(exps * d_logits, axis=-1) / total[..., 0]
    return nll, -d_picked + d_log_total


def _count(mask: jax.Array) -> jax.Array:
    return jnp.maximum(jnp.sum(mask), 1).astype(jnp.float32)


def masked_cross_entropy(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
    """The mean ``token_nll`` over the positions where ``mask`` is True (module docstring)."""
    return jnp.sum(jnp.where(mask, token_nll(logits, targets), 0.0)) / _count(mask)


def masked_accuracy(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
    """The fraction of the positions where ``mask`` is True whose target is the arg-max of ``logits``."""
    right = (jnp.argmax(logits, axis=-1) == targets) & mask
    return jnp.sum(right).astype(jnp.float32) / _count(mask)
