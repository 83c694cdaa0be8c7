"""JAX's own random draws, as one fused computation: the Threefry-2x32 hash written out in ``jnp``.

On CPU, JAX lowers its Threefry hash as a five-iteration loop of four rounds each (to keep compile
times short). Inside a jitted training step every dropout mask then costs a loop of a dozen small
kernels and copies. Written out as its 20 rounds of 32-bit additions, rotations and xors, the hash is
one elementwise expression that XLA fuses with the comparison consuming it. The arithmetic is
Threefry's (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3"), and the bits are
JAX's: with a Threefry key and JAX's default partitionable Threefry (``jax_threefry_partitionable``),
element i of the bits is

    (x_0, x_1) = threefry_2x32((k_0, k_1), (0, i)),    bits_i = x_0 xor x_1

(i the row-major position in ``shape``), so ``bits(key, shape)`` equals ``jax.random.bits(key,
shape)`` and ``bernoulli(key, p, shape)`` equals ``jax.random.bernoulli(key, p, shape)``, bit for bit.
Any other key (``rbg``, a legacy ``uint32`` key, a batch of keys), the non-partitionable setting, a
``p`` that is not float32, or more than 2^32 draws go to ``jax.random`` itself (``fused_draws``
says which).

Measured on a 2-core CPU (three [32, 64, 256] dropout masks applied in one jitted function): 3.45 ms
with ``jax.random.bernoulli``, 1.8 ms here; inside the char_rnn language model's training step,
113.1 ms per update against 105.1 ms (`benchmarks/lm_benchmark.py`'s step, dropout 0.1; 103.8 ms
with no dropout at all).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# The rotation distances of Threefry-2x32's rounds: the first group of four, then the second, alternating.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA  # the key schedule's constant: k_2 = k_0 xor k_1 xor _PARITY


def threefry_2x32(k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 with 20 rounds: the hash of the counter pair ``(x0, x1)`` under the key ``(k0, k1)``.

    With ``ks = (k0, k1, k0 ^ k1 ^ 0x1BD11BDA)``: add ``ks[0], ks[1]``; then five groups of four rounds
    ``x0 += x1; x1 = rotl(x1, r) ^ x0`` (rotations 13, 15, 26, 6 and 17, 29, 16, 24 alternating), after group
    g (from 0) ``x0 += ks[(g + 1) % 3]; x1 += ks[(g + 2) % 3] + g + 1``. All ``uint32``, wrapping.
    """
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(_PARITY))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for group in range(5):
        for r in _ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = ((x1 << jnp.uint32(r)) | (x1 >> jnp.uint32(32 - r))) ^ x0
        x0 = x0 + ks[(group + 1) % 3]
        x1 = x1 + ks[(group + 2) % 3] + jnp.uint32(group + 1)
    return x0, x1


def fused_draws(key: jax.Array, shape: Sequence[int]) -> bool:
    """Whether ``bits`` and ``bernoulli`` compute ``shape``'s draws here (True) or hand them to ``jax.random``."""
    typed = isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    return (
        typed
        and key.shape == ()
        and str(jax.random.key_impl(key)) == "threefry2x32"
        and bool(jax.config.jax_threefry_partitionable)
        and math.prod(shape) < 2**32
    )


def bits(key: jax.Array, shape: Sequence[int]) -> jax.Array:
    """``jax.random.bits(key, shape)`` (``uint32``), as one fused computation where ``fused_draws``."""
    shape = tuple(shape)
    if not fused_draws(key, shape):
        return jax.random.bits(key, shape)
    k0, k1 = jax.random.key_data(key)
    counts = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
    x0, x1 = threefry_2x32(k0, k1, jnp.zeros_like(counts), counts)
    return x0 ^ x1


def bernoulli(key: jax.Array, p: float | jax.Array, shape: Sequence[int]) -> jax.Array:
    """``jax.random.bernoulli(key, p, shape)``: True with probability ``p``, as one fused computation where
    ``fused_draws`` and ``p`` is float32.

    As JAX draws it: ``u = bitcast_f32((bits >> 9) | bits_of(1.0)) - 1`` is uniform on [0, 1) in steps of
    2^-23, and the draw is ``u < p`` (JAX also clips ``u`` at 0 from below, which changes no value here).
    """
    shape = tuple(shape)
    if not fused_draws(key, shape) or jax.dtypes.canonicalize_dtype(jax.lax.dtype(p)) != np.float32:
        return jax.random.bernoulli(key, p, shape)
    mantissa = bits(key, shape) >> jnp.uint32(32 - 23)
    one = np.array(1.0, np.float32).view(np.uint32)
    uniform = jax.lax.bitcast_convert_type(mantissa | jnp.uint32(one), jnp.float32) - jnp.float32(1.0)
    return uniform < jnp.broadcast_to(jnp.asarray(p, jnp.float32), shape)
