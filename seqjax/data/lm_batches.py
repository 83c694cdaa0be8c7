"""Zaremba-style batching for language models with truncated BPTT.

The token stream ``ids [n]`` is cut into ``B`` contiguous parallel streams (``streams [B, L]``,
``L = n // B``, the last ``n mod B`` tokens dropped), and read in windows of ``bptt`` steps: window
``w`` has inputs ``streams[:, w*bptt : (w+1)*bptt]`` and targets one step later. Row ``b`` of window
``w + 1`` continues row ``b`` of window ``w``, so the recurrent state is carried from one window to the
next. ``num_windows = (L - 1) // bptt`` full windows, as in Zaremba et al.'s reader; evaluation adds a
shorter last window so that every one of the ``B * (L - 1)`` targets is scored.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def parallel_streams(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """``[B, n // B]``: row b is ``ids[b * L : (b + 1) * L]``."""
    ids = np.asarray(ids)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    length = len(ids) // batch_size
    if length < 2:
        raise ValueError(f"{len(ids)} tokens are too few for {batch_size} streams of at least 2 tokens")
    return ids[: batch_size * length].reshape(batch_size, length)


def num_windows(streams: np.ndarray, bptt: int) -> int:
    """The number of full windows of ``bptt`` steps (each needs one extra token for its last target)."""
    if bptt < 1:
        raise ValueError(f"bptt must be >= 1, got {bptt}")
    return (streams.shape[1] - 1) // bptt


def window(streams, index, bptt: int):
    """``(inputs [B, bptt], targets [B, bptt])`` of window ``index`` (a Python or traced integer), as JAX arrays."""
    chunk = jax.lax.dynamic_slice_in_dim(jnp.asarray(streams), index * bptt, bptt + 1, axis=1)
    return chunk[:, :-1], chunk[:, 1:]


def all_windows(streams: np.ndarray, bptt: int) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """Every window stacked for a scan: ``inputs, targets [W, B, bptt]`` and the shorter tail window (or None)."""
    count = num_windows(streams, bptt)
    span = count * bptt
    inputs = streams[:, :span].reshape(streams.shape[0], count, bptt).transpose(1, 0, 2)
    targets = streams[:, 1 : span + 1].reshape(streams.shape[0], count, bptt).transpose(1, 0, 2)
    tail = None
    if span + 1 < streams.shape[1]:
        tail = (streams[:, span:-1], streams[:, span + 1 :])
    return inputs, targets, tail
