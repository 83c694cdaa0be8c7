"""Position encodings for the Transformer: fixed sinusoids or a learned table, ``[t, d]``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from seqjax.dense import Params


def sinusoidal_positions(t: int, d: int, dtype=jnp.float32) -> jax.Array:
    """``[t, d]`` fixed encodings (Vaswani et al. 2017, interleaved sin/cos as in the paper).

        PE[pos, 2i]   = sin(pos / 10000^(2i / d))
        PE[pos, 2i+1] = cos(pos / 10000^(2i / d))

    Computed in float64 NumPy at trace time (a constant), then cast to ``dtype``. An odd ``d`` ends
    with a sin column.
    """
    pos = np.arange(t, dtype=np.float64)[:, None]
    two_i = (np.arange(d) // 2 * 2).astype(np.float64)[None, :]
    angle = pos / np.power(10000.0, two_i / d)
    pe = np.where(np.arange(d)[None, :] % 2 == 0, np.sin(angle), np.cos(angle))
    return jnp.asarray(pe, dtype)


def init_learned_positions(key, max_len: int, d: int, stddev: float = 0.02, dtype=jnp.float32) -> Params:
    """``{"embedding": [max_len, d] ~ N(0, stddev^2)}`` (BERT / GPT-2 style learned positions)."""
    return {"embedding": stddev * jax.random.normal(key, (max_len, d), dtype)}


def learned_positions(params: Params, t: int) -> jax.Array:
    """``[t, d]``: the first ``t`` rows of the learned table (``t <= max_len``)."""
    max_len = params["embedding"].shape[0]
    if t > max_len:
        raise ValueError(f"sequence length {t} exceeds the learned positions' max_len {max_len}")
    return params["embedding"][:t]
