"""Attention masks: boolean, **True = may attend**, broadcast to the attention weights ``[b, h, tq, tk]``::

    length_mask(lengths, t)    [b, t]         position j is real iff j < lengths[b] (also the losses' mask)
    padding_mask(lengths, t)   [b, 1, 1, t]   key j is visible iff j < lengths[b]
    causal_mask(t)             [1, 1, t, t]   query i sees key j iff j <= i
    combine_masks(m1, m2, ...) logical and     e.g. decoder self-attention over padded targets

Padded *queries* are not masked by a key mask; their outputs are finite but meaningless, and
``transformer_encoder`` zeroes them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def length_mask(lengths: jax.Array, t: int) -> jax.Array:
    """``[b, t]`` bool, True at the real positions ``j < lengths[b]`` of right-padded sequences."""
    return jnp.arange(t)[None, :] < jnp.asarray(lengths)[:, None]


@functools.partial(jax.jit, static_argnames="t")
def padding_mask(lengths: jax.Array, t: int) -> jax.Array:
    """``[b, 1, 1, t]`` bool: key position j of example b is visible iff ``j < lengths[b]``.

    Args:
      lengths: ``[b]`` int, true lengths of right-padded sequences.
      t: padded length.
    """
    return length_mask(lengths, t)[:, None, None, :]


@functools.partial(jax.jit, static_argnames="t")
def causal_mask(t: int) -> jax.Array:
    """``[1, 1, t, t]`` bool: query i may attend to key j iff ``j <= i``."""
    return jnp.tril(jnp.ones((t, t), jnp.bool_))[None, None]


def combine_masks(*masks: jax.Array | None) -> jax.Array | None:
    """Logical and of the given masks, broadcast together; ``None`` entries are skipped.

    ``combine_masks(padding_mask(lengths, t), causal_mask(t))`` is ``[b, 1, t, t]``: causal and no
    padded keys. Returns None when every mask is None.
    """
    present = [m for m in masks if m is not None]
    if not present:
        return None
    shape = jnp.broadcast_shapes(*(m.shape for m in present))
    combined = jnp.broadcast_to(present[0], shape)
    for m in present[1:]:
        combined = jnp.logical_and(combined, jnp.broadcast_to(m, shape))
    return combined
