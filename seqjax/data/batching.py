"""The training batches of examples of varied length: shuffled every epoch, bucketed by length, a function of the step.

``epoch_batches``: epoch e permutes the training examples with a generator seeded by
``(seed, e)`` and drops the last ``n mod b`` of the permutation (every batch is full; other examples
are dropped in other epochs). With ``bucket``, the permutation is cut into pools of ``bucket_pool``
batches, each pool is sorted by length and cut into batches, and the order of all the batches is
shuffled: a batch holds sentences of similar length (on SST-2's phrase-level train split, mean
length 9.4 and maximum 52, this cuts the padded steps several-fold), while which sentences meet in
a batch still changes every epoch. The batches of an epoch are a function of ``(seed, epoch)``
alone, so a resumed run sees the same batches as an uninterrupted one.
``step_batches`` turns that into ``k -> batch`` for the runner: update k reads batch ``k mod n`` of epoch
``k // n``, n the batches of an epoch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from seqjax.data.text import DataError


@functools.lru_cache(maxsize=2)
def _epoch_batches(
    lengths: bytes, batch_size: int, seed: int, epoch: int, bucket: bool, bucket_pool: int
) -> np.ndarray:
    lengths_array = np.frombuffer(lengths, np.int32)
    rng = np.random.default_rng([seed, epoch])
    num_batches = len(lengths_array) // batch_size
    order = rng.permutation(len(lengths_array))[: num_batches * batch_size]
    if bucket:
        pool = bucket_pool * batch_size
        order = np.concatenate(
            [
                chunk[np.argsort(lengths_array[chunk], kind="stable")]
                for chunk in np.split(order, range(pool, len(order), pool))
            ]
        )
        batches = order.reshape(num_batches, batch_size)
        return batches[rng.permutation(num_batches)].astype(np.int32)
    return order.reshape(num_batches, batch_size).astype(np.int32)


def epoch_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, bucket: bool = True, bucket_pool: int = 50
) -> np.ndarray:
    """The example indices of every batch of epoch ``epoch``, ``[n // batch_size, batch_size]`` int32.

    See the module docstring; a function of its arguments alone (cached for the current epoch).
    """
    if batch_size < 1 or bucket_pool < 1:
        raise ValueError(f"batch_size and bucket_pool must be >= 1, got {batch_size} and {bucket_pool}")
    if len(lengths) < batch_size:
        raise DataError(f"{len(lengths)} training examples, fewer than the batch size {batch_size}")
    return _epoch_batches(np.asarray(lengths, np.int32).tobytes(), batch_size, seed, epoch, bucket, bucket_pool)


def step_batches(
    lengths: np.ndarray,
    batch_size: int,
    seed: int,
    take: Callable[[np.ndarray], Any],
    bucket: bool = True,
    bucket_pool: int = 50,
) -> Callable[[int], Any]:
    """``k -> take(indices)``: the batch of update k, batch ``k mod n`` of epoch ``k // n`` (``epoch_batches``).

    Args:
      lengths: ``[N]`` the training examples' lengths.
      batch_size, seed, bucket, bucket_pool: as for ``epoch_batches``.
      take: ``indices [batch_size] -> batch``, e.g. ``functools.partial(sentiment.take, split, pad_multiple=8)``.
    """
    steps_per_epoch = len(lengths) // batch_size

    def batch(k: int):
        epoch, index = divmod(k, steps_per_epoch)
        return take(epoch_batches(lengths, batch_size, seed, epoch, bucket, bucket_pool)[index])

    return batch
