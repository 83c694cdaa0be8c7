"""A small convolutional image encoder as pure functions: ``[b, H, W]`` grey images -> ``v [b, m]``.

For ``n`` convolution blocks with ``f_1 .. f_n`` filters::

    z_0 = X[..., None]                                        [b, H, W, 1]
    z_j = pool(relu(conv_j(z_{j-1})))                         [b, H / 2^j, W / 2^j, f_j]
    v   = relu(flatten(z_n) F + f)                            [b, m], flattened in (height, width, channel) order

``conv_j`` is a 3 x 3 convolution with 'SAME' zero padding, stride 1, and a bias per filter; ``pool`` is a 2 x 2
max-pool with stride 2 (a trailing odd row or column is dropped). Parameters::

    {"Conv_j": {"kernel": [3, 3, c_in, f_j], "bias": [f_j]} for j < n, "Dense_0": {"kernel": [k, m], "bias": [m]}}

the names, shapes and layout (kernel ``[kh, kw, c_in, c_out]``) of Flax linen's ``Conv`` and ``Dense`` in a compact
module, so checkpoints written when the captioner's encoder was a linen module still load.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

KERNEL = (3, 3)
POOL = (2, 2)


def conv_name(j: int) -> str:
    return f"Conv_{j}"


def param_shapes(conv_features: tuple[int, ...], image_features: int, height: int, width: int) -> dict:
    """The parameters' shapes (module docstring) as nested dicts of tuples, for images ``[b, height, width]``."""
    shapes, channels = {}, 1
    for j, features in enumerate(conv_features):
        shapes[conv_name(j)] = {"kernel": (*KERNEL, channels, features), "bias": (features,)}
        channels, height, width = features, height // POOL[0], width // POOL[1]
    shapes["Dense_0"] = {"kernel": (height * width * channels, image_features), "bias": (image_features,)}
    return shapes


def conv_same(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """``[b, h, w, c_in]`` -> ``[b, h, w, c_out]``: a stride-1 convolution with 'SAME' zero padding, plus ``bias``."""
    y = jax.lax.conv_general_dilated(
        x, kernel, window_strides=(1, 1), padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return y + jnp.broadcast_to(bias, y.shape)


def max_pool(x: jax.Array) -> jax.Array:
    """``[b, h, w, c]`` -> ``[b, h // 2, w // 2, c]``: the maximum of each 2 x 2 window, stride 2."""
    window = (1, *POOL, 1)
    # -inf as a Python scalar: JAX then recognises a max-pool (reduce_window_max), which it can differentiate
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, window, "VALID")


def apply(params: dict, images: jax.Array) -> jax.Array:
    """``v [b, m]`` of ``images [b, H, W]`` (module docstring), in the images' dtype."""
    x = images[..., None]  # [b, H, W, 1]: one channel
    for j in itertools.count():
        if conv_name(j) not in params:
            break
        layer = params[conv_name(j)]
        x = max_pool(jax.nn.relu(conv_same(x, layer["kernel"], layer["bias"])))
    x = x.reshape(x.shape[0], -1)  # [b, h * w * c]
    dense = params["Dense_0"]
    z = x @ dense["kernel"]
    return jax.nn.relu(z + jnp.broadcast_to(dense["bias"], z.shape))
