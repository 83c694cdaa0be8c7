"""Recurrent initialisers against their defining properties, checked in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import initializers
from seqjax.cells import gru, lstm, rnn
from seqjax.initializers import RECURRENT_INITS, fused_blocks, recurrent_init

H = 6


def radius(w):
    return np.max(np.abs(np.linalg.eigvals(np.asarray(w, np.float64))))


def test_orthogonal(key):
    """W W^T = W^T W = I (NumPy)."""
    w = np.asarray(initializers.orthogonal(key, (H, H)), np.float64)
    assert w.dtype == np.float64 and not np.allclose(w, np.eye(H))
    np.testing.assert_allclose(w @ w.T, np.eye(H), atol=1e-5)
    np.testing.assert_allclose(w.T @ w, np.eye(H), atol=1e-5)


def test_fused_blocks_orthogonal(key):
    """fused_blocks(orthogonal, h, 4): [h, 4h], each [h, h] block orthogonal, and the blocks are independent."""
    w = np.asarray(fused_blocks(initializers.orthogonal, key, H, 4), np.float64)
    assert w.shape == (H, 4 * H)
    parts = np.split(w, 4, axis=1)
    for part in parts:
        np.testing.assert_allclose(part @ part.T, np.eye(H), atol=1e-5)
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(parts[i] - parts[j]).max() > 1e-2


def test_identity(key):
    """identity is exactly I; recurrent_init('identity', scale) is exactly scale * I, in the requested dtype."""
    np.testing.assert_array_equal(np.asarray(initializers.identity(key, (H, H))), np.eye(H, dtype=np.float32))
    for scale in (3.0, 0.2):
        w = recurrent_init("identity", scale=scale)(key, (H, H))
        assert w.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(w), np.float32(scale) * np.eye(H, dtype=np.float32))
    w16 = recurrent_init("identity", scale=3.0)(key, (H, H), jnp.bfloat16)
    assert w16.dtype == jnp.bfloat16


@pytest.mark.parametrize("r", [0.5, 1.0, 1.3])
def test_gaussian_spectral_radius(key, r):
    """max|eig(W)| (numpy.linalg.eigvals) equals the requested radius exactly, not in expectation."""
    w = initializers.gaussian(spectral_radius=r)(key, (H, H))
    assert w.dtype == jnp.float32
    np.testing.assert_allclose(radius(w), r, rtol=1e-4)


def test_gaussian_scaled_radius(key):
    """recurrent_init('gaussian', spectral_radius=0.9, scale=2) has radius 1.8, and differs per key."""
    init = recurrent_init("gaussian", scale=2.0, spectral_radius=0.9)
    k1, k2 = jax.random.split(key)
    w1, w2 = init(k1, (H, H)), init(k2, (H, H))
    np.testing.assert_allclose(radius(w1), 1.8, rtol=1e-4)
    np.testing.assert_allclose(radius(w2), 1.8, rtol=1e-4)
    assert np.abs(np.asarray(w1) - np.asarray(w2)).max() > 1e-2


def test_recurrent_init_by_name(key):
    """'orthogonal' is orthogonal; scale multiplies it."""
    w = np.asarray(recurrent_init("orthogonal", scale=0.5)(key, (H, H)), np.float64)
    np.testing.assert_allclose(w @ w.T, 0.25 * np.eye(H), atol=1e-5)


def test_unknown_init_lists_known():
    with pytest.raises(ValueError, match="unknown recurrent initialiser 'xavier'") as info:
        recurrent_init("xavier")
    for name in RECURRENT_INITS:
        assert name in str(info.value)


def test_cells_use_given_recurrent_init(key):
    """rnn's W_hh and every gate block of lstm/gru's W_hh are 0.2 I under recurrent_init('identity', 0.2)."""
    init = recurrent_init("identity", scale=0.2)
    expected = np.float32(0.2) * np.eye(H, dtype=np.float32)
    for cell, num_blocks in (
        (rnn(recurrent_init=init), 1),
        (lstm(recurrent_init=init), 4),
        (gru(recurrent_init=init), 3),
    ):
        w_hh = np.asarray(cell.init_params(key, 3, H)["w_hh"])
        assert w_hh.shape == (H, num_blocks * H)
        for block in np.split(w_hh, num_blocks, axis=1):
            np.testing.assert_array_equal(block, expected)
    # and the gaussian init per block: each gate block has the requested radius
    w_hh = lstm(recurrent_init=recurrent_init("gaussian", spectral_radius=0.7)).init_params(key, 3, H)["w_hh"]
    for block in np.split(np.asarray(w_hh), 4, axis=1):
        np.testing.assert_allclose(radius(block), 0.7, rtol=1e-4)
