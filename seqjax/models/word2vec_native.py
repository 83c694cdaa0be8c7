"""word2vec's sparse SGD chunk as a C++ kernel called through JAX's FFI (``seqjax/native/word2vec_sgd.cc``).

``sgd_chunk`` runs up to N batches of negative-sampling SGD in one call, each batch exactly as
``word2vec.sgd_step`` defines it (gradients from the tables before the batch, then every row's updates added in
example order), with the tables updated in place. It is what XLA:CPU cannot do fast: XLA scatters one row at a time
from one thread, where the kernel adds each row's updates with vector instructions, split by row over ``threads``
threads, so its result does not depend on their number. It draws the noise words itself, with its own copy of JAX's
Threefry-2x32 ``fold_in`` and ``uniform``, and gets the same ids as ``word2vec.draw_negatives`` (a test checks
it); that spares XLA compiling the draws (about 0.8 s) and running them (0.25 s of a PTB skip-gram epoch). The two
paths then differ only in the order of float sums (a dot product's lanes, XLA's reductions), a few ulps per update.

``load()`` compiles the kernel on first use (``seqjax.native.build``) and registers it with XLA; where it cannot be
built it raises ``NativeUnavailable`` with one line saying why.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from seqjax.models import word2vec
from seqjax.native import build
from seqjax.native.build import NativeUnavailable

TARGET = "seqjax_word2vec_sgd_chunk"
NOISE_TARGET = "seqjax_word2vec_noise_chunk"

__all__ = ["NOISE_TARGET", "TARGET", "NativeUnavailable", "load", "noise_chunk", "sgd_chunk"]


@functools.cache
def load() -> None:
    """Compiles (once per source, compiler and machine) and registers the kernel; ``NativeUnavailable`` if it cannot."""
    library = build.library("word2vec_sgd")
    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(library.Word2VecSgdChunk), platform="cpu")
    jax.ffi.register_ffi_target(NOISE_TARGET, jax.ffi.pycapsule(library.Word2VecNoiseChunk), platform="cpu")


def _key_data(key: jax.Array) -> jax.Array:
    """The raw uint32 [2] of a Threefry key (what the kernel's copy of ``fold_in`` and ``uniform`` read)."""
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    if data.shape != (2,) or data.dtype != jnp.uint32:
        raise ValueError(f"the native word2vec update needs a threefry2x32 key, got key data {data.dtype}{data.shape}")
    return data


def _table_args(table: word2vec.NoiseTable) -> tuple[jax.Array, jax.Array]:
    return jnp.asarray(table.cumulative, jnp.float32), jnp.asarray(table.guide, jnp.int32)


def sgd_chunk(
    params: word2vec.Word2VecParams,
    batch: word2vec.Batch,
    key: jax.Array,
    table: word2vec.NoiseTable,
    negatives: int,
    learning_rates: jax.Array,
    valid: jax.Array,
    first_step: jax.Array,
    nonfinite: jax.Array,
    threads: int,
) -> tuple[word2vec.Word2VecParams, jax.Array, jax.Array]:
    """Up to ``valid`` SGD steps over a chunk of batches; ``(params, loss_sum, nonfinite)``.

    Args:
      params: the tables, [V, D] float32 each (updated in place when the caller donates them).
      batch: ``Batch`` with a leading [N] axis: skip-gram ``inputs`` [N, P], CBOW ``inputs`` and
        ``context_weights`` [N, P, C]; ``targets``, ``weights`` [N, P].
      key: the noise key; batch i draws its [P, K] noise ids as
        ``word2vec.draw_negatives(fold_in(key, first_step + i), table, (P, negatives))`` does.
      table: the noise distribution (``word2vec.noise_table``).
      negatives: K, noise words per example.
      learning_rates: [N] float32, batch i's.
      valid: int32 scalar, the batches to run (the rest are padding).
      first_step: int32 scalar, the step number of batch 0.
      nonfinite: int32 scalar, -1 or a step whose loss was not finite: then no batch runs.
      threads: threads the kernel splits each batch over (>= 1).

    Returns the new tables, the summed loss of the batches run, and -1 or the step number of the first batch whose
    loss was not finite (its update is applied, none after it), as ``word2vec_training.make_chunk_step``'s loop.
    """
    load()
    cbow = batch.context_weights is not None
    contexts = batch.inputs if cbow else batch.inputs[..., None]
    context_weights = batch.context_weights if cbow else batch.weights[..., None]  # read by CBOW only
    tables = jax.ShapeDtypeStruct(params.input.shape, jnp.float32)
    scalar = lambda dtype: jax.ShapeDtypeStruct((), dtype)
    call = jax.ffi.ffi_call(
        TARGET, (tables, tables, scalar(jnp.float32), scalar(jnp.int32)), input_output_aliases={0: 0, 1: 1}
    )
    i32 = lambda x: jnp.asarray(x, jnp.int32)
    inputs, output, loss_sum, nonfinite = call(
        params.input, params.output, i32(contexts), jnp.asarray(context_weights, jnp.float32), i32(batch.targets),
        jnp.asarray(batch.weights, jnp.float32), jnp.asarray(learning_rates, jnp.float32), _key_data(key),
        *_table_args(table), i32(valid), i32(first_step), i32(nonfinite),
        threads=np.int64(threads), cbow=np.int64(cbow), negatives=np.int64(negatives), reach=np.int64(table.reach),
    )  # fmt: skip
    return word2vec.Word2VecParams(inputs, output), loss_sum, nonfinite


def noise_chunk(key: jax.Array, table: word2vec.NoiseTable, first_step: jax.Array, shape: tuple[int, int, int]):
    """The noise ids int32 ``shape`` = [N, P, K] that ``sgd_chunk`` draws for its N batches (to test them)."""
    load()
    call = jax.ffi.ffi_call(NOISE_TARGET, jax.ShapeDtypeStruct(shape, jnp.int32))
    return call(_key_data(key), *_table_args(table), jnp.asarray(first_step, jnp.int32), reach=np.int64(table.reach))
