"""seqjax.random_bits against jax.random: the same bits and Bernoulli draws, and the fused path taken where the
key and settings allow it (the rule ``fused_draws``), jax.random's own elsewhere."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import layers, random_bits

SHAPES = [(), (1,), (7,), (3, 5, 2), (33, 65)]
KEYS = [jax.random.key(0), jax.random.fold_in(jax.random.key(7), 3), jax.random.key(2**31 - 1)]


def jaxpr_text(fn, *args) -> str:
    """``fn``'s jaxpr as text, nested jaxprs included: where its primitives can be looked for by name."""
    return str(jax.make_jaxpr(fn)(*args))


def test_threefry_known_answer():
    # Random123's known-answer vectors for threefry2x32 with 20 rounds (kat_vectors): key, counter -> output.
    cases = [
        ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
        ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
        ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
    ]
    for (k0, k1), (x0, x1), expected in cases:
        out = random_bits.threefry_2x32(*(jnp.uint32(v) for v in (k0, k1, x0, x1)))
        assert tuple(int(v) for v in out) == expected


@pytest.mark.parametrize("shape", SHAPES)
def test_bits_are_jax_random_bits(shape):
    for key in KEYS:
        np.testing.assert_array_equal(random_bits.bits(key, shape), jax.random.bits(key, shape))
        assert random_bits.fused_draws(key, shape)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0, np.float32(0.3)])
def test_bernoulli_is_jax_random_bernoulli(p):
    for key in KEYS:
        for shape in SHAPES:
            np.testing.assert_array_equal(random_bits.bernoulli(key, p, shape), jax.random.bernoulli(key, p, shape))
    jitted = jax.jit(random_bits.bernoulli, static_argnums=2)
    np.testing.assert_array_equal(jitted(KEYS[1], p, (4, 6)), jax.random.bernoulli(KEYS[1], p, (4, 6)))


def test_bernoulli_under_vmap_and_with_an_array_p():
    keys = jax.random.split(jax.random.key(3), 5)
    ours = jax.vmap(lambda k: random_bits.bernoulli(k, 0.4, (3, 4)))(keys)
    theirs = jax.vmap(lambda k: jax.random.bernoulli(k, 0.4, (3, 4)))(keys)
    np.testing.assert_array_equal(ours, theirs)
    p = jnp.linspace(0.0, 1.0, 12, dtype=jnp.float32).reshape(3, 4)
    np.testing.assert_array_equal(random_bits.bernoulli(KEYS[0], p, (3, 4)), jax.random.bernoulli(KEYS[0], p, (3, 4)))


def test_fused_path_is_the_one_taken():
    key = jax.random.key(0)
    assert "random_bits" in jaxpr_text(lambda k: jax.random.bernoulli(k, 0.9, (8, 3)), key)  # what it replaces
    assert "random_bits" not in jaxpr_text(lambda k: random_bits.bernoulli(k, 0.9, (8, 3)), key)
    assert "random_bits" not in jaxpr_text(lambda k: layers.dropout(jnp.ones((4, 5)), 0.5, k), key)


@pytest.mark.parametrize(
    "key",
    [jax.random.key(0, impl="rbg"), jax.random.key(0, impl="unsafe_rbg"), jax.random.PRNGKey(0)],
    ids=["rbg", "unsafe_rbg", "legacy_uint32"],
)
def test_other_keys_go_to_jax_random(key):
    assert not random_bits.fused_draws(key, (4, 5))
    np.testing.assert_array_equal(random_bits.bits(key, (4, 5)), jax.random.bits(key, (4, 5)))
    np.testing.assert_array_equal(random_bits.bernoulli(key, 0.3, (4, 5)), jax.random.bernoulli(key, 0.3, (4, 5)))
    assert "random_bits" in jaxpr_text(lambda k: random_bits.bernoulli(k, 0.3, (4, 5)), key)


def test_non_partitionable_threefry_and_float64_go_to_jax_random():
    key = jax.random.key(5)
    with jax.threefry_partitionable(False):
        assert not random_bits.fused_draws(key, (6,))
        np.testing.assert_array_equal(random_bits.bits(key, (6,)), jax.random.bits(key, (6,)))
    with jax.enable_x64(True):
        np.testing.assert_array_equal(random_bits.bernoulli(key, 0.3, (50,)), jax.random.bernoulli(key, 0.3, (50,)))
        assert "random_bits" in jaxpr_text(lambda k: random_bits.bernoulli(k, 0.3, (50,)), key)


def test_dropout_masks_are_those_of_jax_random_bernoulli():
    """layers.dropout's output written again with jax.random.bernoulli: the same values after the change."""
    x = jax.random.normal(jax.random.key(1), (3, 4, 5))
    key = jax.random.key(9)
    for shared_axes, mask_shape in (((), (3, 4, 5)), ((1,), (3, 1, 5))):
        expected = jnp.where(jax.random.bernoulli(key, 0.75, mask_shape), x / 0.75, 0.0)
        np.testing.assert_array_equal(layers.dropout(x, 0.25, key, shared_axes), expected)
