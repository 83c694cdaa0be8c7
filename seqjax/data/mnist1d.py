"""MNIST-1D (Greydanus 2020, "Scaling down deep learning"): ten digit templates made into length-40 signals.

The ``mnist1d`` package generates the dataset offline (nothing is downloaded): each of the ten 12-point templates
is padded, translated, scaled, sheared, smoothed with correlated noise and sampled at 40 points, and the whole set
is centred and scaled to unit standard deviation. With the package's defaults (``get_dataset_args``: 5,000
examples, 80% train, seed 42) that is 4,000 training and 1,000 test signals of 40 steps, labels 0..9. The shuffled
variant (``shuffle_seq``) permutes the 40 positions of every signal by one fixed permutation, which keeps each
example's values and removes the order a sequence model could use (published: a GRU 91% on the ordered signals,
57% on the shuffled ones; a CNN 94%, an MLP 68%, logistic regression 32%).

As a sequence task the signal is read one value per step: inputs ``[n, 40, 1]`` float32, labels ``[n]`` int32.
``checksum`` is the SHA-256 of the four arrays as generated (float64 signals, int64 labels): a different
``mnist1d`` or SciPy that made other data says so in every run's results.
"""

from __future__ import annotations

import functools
import hashlib
import random
from typing import NamedTuple

import numpy as np

from seqjax.data.text import DataError

LENGTH = 40  # steps of a signal with the package's defaults
TRAIN_EXAMPLES = 4000  # and training examples (5,000, 80% of them)
NUM_CLASSES = 10


class Mnist1D(NamedTuple):
    """The train and test splits as sequences, and the generated arrays' checksum.

    Attributes:
      train_inputs: ``[n_train, 40, 1]`` float32 (n_train = 4,000 with the defaults).
      train_labels: ``[n_train]`` int32 in 0..9.
      test_inputs: ``[n_test, 40, 1]`` float32 (n_test = 1,000).
      test_labels: ``[n_test]`` int32.
      checksum: hex SHA-256 of the generated float64 signals and int64 labels (train, then test).
    """

    train_inputs: np.ndarray
    train_labels: np.ndarray
    test_inputs: np.ndarray
    test_labels: np.ndarray
    checksum: str


def _package():
    try:
        from mnist1d import data
    except ImportError as e:
        raise DataError("MNIST-1D needs the mnist1d package: pip install mnist1d") from e
    return data


def package_arrays(shuffled: bool = False, num_samples: int = 5000, seed: int = 42) -> dict[str, np.ndarray]:
    """The package's own ``make_dataset`` output for its default arguments with these three changed.

    The package seeds NumPy's and Python's global generators; their states are restored afterwards, so generating
    the data changes nothing else in the process.
    """
    data = _package()
    args = data.get_dataset_args()
    args.shuffle_seq, args.num_samples, args.seed = shuffled, num_samples, seed
    numpy_state, python_state = np.random.get_state(), random.getstate()  # noqa: NPY002 (the package's)
    try:
        return data.make_dataset(args)
    finally:
        np.random.set_state(numpy_state)  # noqa: NPY002
        random.setstate(python_state)


@functools.lru_cache(maxsize=4)
def load(shuffled: bool = False, num_samples: int = 5000, seed: int = 42) -> Mnist1D:
    """MNIST-1D as sequences (the module docstring); generated once per process and arguments.

    ``DataError`` if the package is missing or makes something other than 40-step signals with labels 0..9.
    """
    made = package_arrays(shuffled, num_samples, seed)
    arrays = [np.asarray(made[name]) for name in ("x", "y", "x_test", "y_test")]
    x, y, x_test, y_test = arrays
    if x.ndim != 2 or x.shape[1] != LENGTH or x_test.shape[1:] != x.shape[1:] or len(x) != len(y):
        raise DataError(f"mnist1d made signals of shapes {x.shape} and {x_test.shape}; expected [n, {LENGTH}]")
    if not (set(np.unique(y)) | set(np.unique(y_test))) <= set(range(NUM_CLASSES)):
        raise DataError(f"mnist1d made labels outside 0..{NUM_CLASSES - 1}")
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return Mnist1D(
        x[..., None].astype(np.float32),
        y.astype(np.int32),
        x_test[..., None].astype(np.float32),
        y_test.astype(np.int32),
        digest.hexdigest(),
    )
