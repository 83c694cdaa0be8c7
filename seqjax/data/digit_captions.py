"""Captioned images of handwritten digits side by side, made from scikit-learn's bundled digits.

The source is ``sklearn.datasets.load_digits``: 1,797 grey images of 8 x 8 pixels (values 0..16), each of
one digit 0-9, shipped with scikit-learn (no download). They are first split into three disjoint pools,
stratified by digit (``split_pools``), so that no dev or test image reuses a training digit image. Each
split's examples are then composed from its own pool only (``compose``): ``n`` digit images (``n`` uniform in
``min_digits..max_digits``, ``n = max_digits`` when they are equal) drawn with replacement, placed side by side
and padded on the right with blank (0) pixels to ``[8, 8 max_digits]``, pixel values scaled to [0, 1]::

    image   = [ D[s_1] | D[s_2] | ... | D[s_n] | 0 ] / 16      D[s]: source image s, [8, 8]
    caption = names of labels[s_1], ..., labels[s_n], <eos>    e.g. "three one four <eos>"

Vocabulary (``VOCAB``): ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``zero`` .. ``nine`` = 3 .. 12 (word id =
digit + 3). Everything is a function of the seed: the same arguments give the same arrays.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import numpy as np

from seqjax.data.text import DataError, Vocab

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PAD, BOS, EOS = 0, 1, 2
FIRST_DIGIT = 3  # the id of "zero"
VOCAB = Vocab(("<pad>", "<bos>", "<eos>", *DIGIT_NAMES))
DIGIT_SIZE = 8  # sklearn digits are 8 x 8
MAX_PIXEL = 16.0  # sklearn digits take the values 0..16
SPLITS = ("train", "dev", "test")


class Source(NamedTuple):
    """``images [1797, 8, 8]`` float32 in [0, 1] (sklearn's values / 16) and ``labels [1797]`` int32 digits."""

    images: np.ndarray
    labels: np.ndarray


@functools.cache
def load_source() -> Source:
    """scikit-learn's bundled digits, scaled to [0, 1] (read once per process)."""
    from sklearn.datasets import load_digits  # a heavy import, needed only here

    digits = load_digits()
    images = (np.asarray(digits.images, np.float64) / MAX_PIXEL).astype(np.float32)
    return Source(images, np.asarray(digits.target, np.int32))


class CaptionSplit(NamedTuple):
    """One split of composed examples.

    Attributes:
      images: ``[n, 8, 8 k]`` float32 in [0, 1], k = ``max_digits``; blank (0) right of the last digit.
      captions: ``[n, k + 1]`` int32 word ids: the digits' names, ``<eos>``, then ``<pad>``.
      lengths: ``[n]`` int32 caption lengths counting ``<eos>`` (number of digits + 1).
      sources: ``[n, k]`` int32 indices of the source digit images (into ``load_source()``), -1 where none.
    """

    images: np.ndarray
    captions: np.ndarray
    lengths: np.ndarray
    sources: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)


@dataclasses.dataclass(frozen=True)
class CaptionData:
    """The three composed splits and the source pools they were drawn from (``pools[split]``: indices)."""

    train: CaptionSplit
    dev: CaptionSplit
    test: CaptionSplit
    pools: dict[str, np.ndarray]


def split_pools(labels: np.ndarray, dev_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Disjoint, sorted index pools ``{"train", "dev", "test"}`` covering ``range(len(labels))``.

    Stratified: of each digit's m images (in a seeded random order), ``round(m test_fraction)`` go to test,
    ``round(m dev_fraction)`` to dev, the rest to train.
    """
    if not (0 < dev_fraction and 0 < test_fraction and dev_fraction + test_fraction < 1):
        raise DataError(
            f"--dev_fraction={dev_fraction} and --test_fraction={test_fraction}: each must be > 0 and their sum < 1"
        )
    rng = np.random.default_rng([seed, 0])
    pools: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for digit in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == digit))
        num_test, num_dev = round(len(members) * test_fraction), round(len(members) * dev_fraction)
        pools["test"].append(members[:num_test])
        pools["dev"].append(members[num_test : num_test + num_dev])
        pools["train"].append(members[num_test + num_dev :])
    result = {split: np.sort(np.concatenate(parts)).astype(np.int32) for split, parts in pools.items()}
    for split, pool in result.items():
        if len(pool) == 0:
            raise DataError(f"the {split} pool of source digits is empty: change --dev_fraction/--test_fraction")
    return result


def compose(
    source: Source, pool: np.ndarray, size: int, min_digits: int, max_digits: int, rng: np.random.Generator
) -> CaptionSplit:
    """``size`` examples of ``min_digits..max_digits`` digits drawn (with replacement) from ``pool`` (module doc)."""
    if not 1 <= min_digits <= max_digits:
        raise DataError(f"need 1 <= --min_digits <= --digits_per_image, got {min_digits} and {max_digits}")
    counts = rng.integers(min_digits, max_digits + 1, size=size)
    drawn = pool[rng.integers(0, len(pool), size=(size, max_digits))]
    present = np.arange(max_digits)[None, :] < counts[:, None]  # [n, k]
    sources = np.where(present, drawn, -1).astype(np.int32)
    tiles = np.where(present[:, :, None, None], source.images[drawn], np.float32(0))  # [n, k, 8, 8]
    images = tiles.transpose(0, 2, 1, 3).reshape(size, DIGIT_SIZE, max_digits * DIGIT_SIZE)  # [n, 8, 8 k]
    words = np.where(present, source.labels[drawn] + FIRST_DIGIT, PAD)
    captions = np.concatenate([words, np.full((size, 1), PAD)], axis=1)
    captions[np.arange(size), counts] = EOS
    return CaptionSplit(images.astype(np.float32), captions.astype(np.int32), (counts + 1).astype(np.int32), sources)


def make_data(
    seed: int,
    train_size: int,
    dev_size: int,
    test_size: int,
    digits_per_image: int = 3,
    min_digits: int = 0,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> CaptionData:
    """The pools (``split_pools``) and the three composed splits, all from ``seed``.

    Args:
      seed: the only randomness.
      train_size, dev_size, test_size: composed examples per split (>= 1).
      digits_per_image: k, the most digits in an image (its width is 8 k).
      min_digits: the fewest digits in an image; 0 means k (every image holds exactly k digits).
      dev_fraction, test_fraction: the share of each digit's source images in the dev and test pools.
    """
    sizes = {"train": train_size, "dev": dev_size, "test": test_size}
    for split, size in sizes.items():
        if size < 1:
            raise DataError(f"--{split}_size must be >= 1, got {size}")
    low = min_digits or digits_per_image
    source = load_source()
    pools = split_pools(source.labels, dev_fraction, test_fraction, seed)
    splits = {
        split: compose(source, pools[split], size, low, digits_per_image, np.random.default_rng([seed, 1 + i]))
        for i, (split, size) in enumerate(sizes.items())
    }
    return CaptionData(**splits, pools=pools)


def caption_words(ids: np.ndarray) -> list[str]:
    """The words of one caption ``[t]`` up to (not including) its first ``<eos>`` (or ``<pad>``)."""
    words = []
    for i in np.asarray(ids).tolist():
        if i in (EOS, PAD):
            break
        words.append(VOCAB.tokens[i])
    return words
