"""seqjax.data.mnist1d against the mnist1d package's own arrays."""

import random

import numpy as np
import pytest
from mnist1d.data import get_dataset_args, make_dataset

from seqjax.data import mnist1d


def test_the_splits_are_the_packages_arrays_as_sequences():
    args = get_dataset_args()
    args.num_samples = 500  # the defaults but the size: 400 train, 100 test
    made = make_dataset(args)
    data = mnist1d.load(num_samples=500)
    assert data.train_inputs.shape == (400, 40, 1) and data.test_inputs.shape == (100, 40, 1)
    assert data.train_inputs.dtype == np.float32 and data.train_labels.dtype == np.int32
    np.testing.assert_array_equal(data.train_inputs[..., 0], made["x"].astype(np.float32))
    np.testing.assert_array_equal(data.test_inputs[..., 0], made["x_test"].astype(np.float32))
    np.testing.assert_array_equal(data.train_labels, made["y"])
    np.testing.assert_array_equal(data.test_labels, made["y_test"])
    assert len(data.checksum) == 64


def test_the_default_dataset_has_the_published_sizes():
    data = mnist1d.load()  # 5,000 examples, 80% train, seed 42
    assert data.train_inputs.shape == (4000, 40, 1) and data.test_inputs.shape == (1000, 40, 1)
    assert np.bincount(data.train_labels).tolist() == [398, 396, 411, 394, 394, 402, 401, 404, 402, 398]
    assert abs(float(np.mean(data.train_inputs))) < 0.05 and abs(float(np.std(data.train_inputs)) - 1) < 0.05


def test_the_shuffled_variant_permutes_every_signal_by_one_permutation():
    ordered, shuffled = mnist1d.load(num_samples=300), mnist1d.load(shuffled=True, num_samples=300)
    np.testing.assert_array_equal(ordered.train_labels, shuffled.train_labels)
    first, moved = ordered.train_inputs[0, :, 0], shuffled.train_inputs[0, :, 0]
    permutation = [int(np.flatnonzero(first == value)[0]) for value in moved]
    assert sorted(permutation) == list(range(40)) and permutation != list(range(40))
    np.testing.assert_array_equal(shuffled.train_inputs[..., 0], ordered.train_inputs[:, permutation, 0])
    np.testing.assert_array_equal(shuffled.test_inputs[..., 0], ordered.test_inputs[:, permutation, 0])
    assert shuffled.checksum != ordered.checksum


def test_generating_leaves_the_global_generators_as_they_were():
    """The package seeds the legacy global generators; the loader puts them back."""
    np.random.seed(7)  # noqa: NPY002
    random.seed(7)
    expected = (np.random.random(), random.random())  # noqa: NPY002
    np.random.seed(7)  # noqa: NPY002
    random.seed(7)
    mnist1d.package_arrays(num_samples=100, seed=3)
    assert (np.random.random(), random.random()) == expected  # noqa: NPY002


def test_a_missing_package_is_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mnist1d(name, *args, **kwargs):
        if name.startswith("mnist1d"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mnist1d)
    with pytest.raises(mnist1d.DataError, match=r"^MNIST-1D needs the mnist1d package: pip install mnist1d$"):
        mnist1d.package_arrays(num_samples=10)
