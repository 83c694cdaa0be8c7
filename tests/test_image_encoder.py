"""The captioner's image encoder (pure functions) against Flax linen's Conv, max_pool and Dense, same weights."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from seqjax.models import image_encoder


class LinenEncoder(nn.Module):
    """The reference: the captioner's encoder as it was written with Flax linen."""

    conv_features: tuple[int, ...]
    image_features: int

    @nn.compact
    def __call__(self, images):
        x = images[..., None]
        for features in self.conv_features:
            x = nn.Conv(features, (3, 3), padding="SAME")(x)
            x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
        return nn.relu(nn.Dense(self.image_features)(x.reshape(x.shape[0], -1)))


def random_params(shapes, key):
    """Every kernel and bias N(0, 0.5^2), so that the biases and every window position matter."""
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [0.5 * jax.random.normal(k, s) for k, s in zip(keys, leaves, strict=True)])


def test_encoder_equals_linen_values_and_gradients(key):
    # odd sizes: the 'SAME' padding at every border, and pools that drop a trailing row or column (11 -> 5 -> 2 -> 1)
    features, height, width = (2, 3, 2), 11, 13
    module = LinenEncoder(features, 5)
    shapes = image_encoder.param_shapes(features, 5, height, width)
    images = jax.random.uniform(jax.random.key(1), (2, height, width)) - 0.3
    linen_shapes = jax.eval_shape(module.init, key, images)["params"]
    assert jax.tree.map(lambda a: a.shape, linen_shapes) == shapes  # linen's names and layout: old checkpoints load
    params = random_params(shapes, key)
    weights = jax.random.normal(jax.random.key(2), (2, 5))

    def value_and_grads(encode):  # v and d(sum(weights * v)) / d(params, images)
        def loss(p, x):
            v = encode(p, x)
            return jnp.sum(weights * v), v

        (_, v), grads = jax.value_and_grad(loss, (0, 1), has_aux=True)(params, images)
        return v, grads

    (v, grads), (v_ref, grads_ref) = jax.jit(
        lambda: (value_and_grads(image_encoder.apply), value_and_grads(lambda p, x: module.apply({"params": p}, x)))
    )()
    assert (np.asarray(v) > 0).any() and (np.asarray(v) == 0).any()  # relu on both sides of 0
    np.testing.assert_allclose(v, v_ref, rtol=1e-6, atol=1e-6)
    for g, g_ref in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref), strict=True):
        assert np.abs(np.asarray(g_ref)).max() > 0
        np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-6)
