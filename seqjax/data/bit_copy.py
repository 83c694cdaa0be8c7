"""The copy task of the minimal-LRU reference code (``lru/dataloaders/copy.py``): recall a pattern of bit vectors.

A pattern is ``l`` steps of ``k`` bits, each bit 0 or 1 with probability 1/2. With ``p`` padding steps, a sequence
has ``t = 2 l + p + 1`` steps and ``k + 1`` input channels::

    steps 0 .. l-1           inputs: the pattern on channels 0..k-1                  targets: masked
    steps l .. l+p-1         inputs: zeros                                           targets: masked
    step  l+p                inputs: the stop token, 1 on channel k                  targets: masked
    steps l+p+1 .. 2l+p      inputs: zeros                                           targets: the pattern

so the model must output the pattern, step for step, on the ``l`` steps that follow the stop token. The mask is 1
on those last ``l`` steps and 0 elsewhere; masked targets are 0. The reference's defaults: ``l = 20``, ``k = 7``
(``in_dim = 8``), ``p = 7`` (its loader passes ``padding_length=5``, a name the dataset does not read, so the
dataset's own ``pad_length = 7`` holds: the stop token comes 8 steps after the pattern, as its README says),
``t = 48``; 20,000 training, 1,000 validation and 1,000 test sequences.

Patterns are drawn from a ``jax.random`` key (the reference draws them with PyTorch's global generator); a split is
a fixed array of patterns, and ``sequences`` lays out any batch of them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

PATTERN_LENGTH = 20  # l
BITS = 7  # k
PAD_LENGTH = 7  # p
SPLITS = ("train", "val", "test")


class Batch(NamedTuple):
    """A batch of copy sequences (every leaf batch-major, so a data-parallel run splits them by rows).

    Attributes:
      inputs: ``[b, t, k + 1]`` float32: the pattern, then zeros, the stop token on the last channel, zeros.
      targets: ``[b, t, k]`` int32 in {0, 1}: the pattern on the last ``l`` steps, 0 elsewhere.
      mask: ``[b, t]`` float32: 1 on the last ``l`` steps (where the pattern is recalled), 0 elsewhere.
    """

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray


def sequence_length(pattern_length: int = PATTERN_LENGTH, pad_length: int = PAD_LENGTH) -> int:
    """``t = 2 l + p + 1``: the pattern, the padding, the stop token and the recall."""
    return 2 * pattern_length + pad_length + 1


def patterns(key: jax.Array, num: int, pattern_length: int = PATTERN_LENGTH, bits: int = BITS) -> np.ndarray:
    """``num`` patterns ``[num, l, k]`` uint8, every bit 0 or 1 with probability 1/2, from ``key``."""
    return np.asarray(jax.random.bernoulli(key, 0.5, (num, pattern_length, bits)), np.uint8)


def splits(key: jax.Array, sizes: tuple[int, int, int], pattern_length: int = PATTERN_LENGTH,
           bits: int = BITS) -> dict[str, np.ndarray]:  # fmt: skip
    """The train, val and test patterns, ``{split: [size, l, k]}``, split i drawn from ``fold_in(key, i)``."""
    return {name: patterns(jax.random.fold_in(key, i), size, pattern_length, bits)
            for i, (name, size) in enumerate(zip(SPLITS, sizes, strict=True))}  # fmt: skip


def sequences(pattern_batch: np.ndarray, pad_length: int = PAD_LENGTH) -> Batch:
    """The copy sequences of ``pattern_batch [b, l, k]`` (see the module docstring)."""
    b, length, k = pattern_batch.shape
    t = sequence_length(length, pad_length)
    inputs = np.zeros((b, t, k + 1), np.float32)
    inputs[:, :length, :k] = pattern_batch
    inputs[:, length + pad_length, k] = 1.0
    targets = np.zeros((b, t, k), np.int32)
    targets[:, t - length :] = pattern_batch
    mask = np.zeros((b, t), np.float32)
    mask[:, t - length :] = 1.0
    return Batch(inputs, targets, mask)
