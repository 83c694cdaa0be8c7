"""The Real-Gated Linear Recurrent Unit, RG-LRU (De et al. 2024, "Griffin"; the recurrence of RecurrentGemma).

::

    r_t = sigma(x_t W_r + b_r)            recurrence gate
    i_t = sigma(x_t W_i + b_i)            input gate
    v_t = x_t W_v + b_v                   the recurrence's input
    a_t = a^(c r_t),  a = sigma(Lambda)   so log a_t = -c r_t softplus(-Lambda)
    h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * v_t),    y_t = h_t

``c = 8``. ``a`` is initialised uniform on the area of the ring ``a_min <= a <= a_max`` (0.9 and 0.999, as in the
paper: ``a = sqrt(U(a_min^2, a_max^2))``, ``Lambda = logit(a)``). ``sqrt(1 - a_t^2)`` is taken as
``sqrt(-expm1(2 log a_t))`` with its derivative bounded by 1000, as in RecurrentGemma, so that ``a_t -> 1`` cannot
blow up the gradient. In Griffin the RG-LRU reads ``v_t`` from a linear layer and a short convolution of the block's
input, and its gates read ``v_t`` (with block-diagonal weights); here the gates and ``v_t`` are three linear maps
of the cell's input ``x_t``, one fused projection, so the cell stands alone like any other.

Params: ``w_ih [d, 3h]`` (r, i, v), ``b [3h]``, ``log_a`` (Lambda) ``[h]``. Carry ``h [*b, h]``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from seqjax import initializers, precision
from seqjax.cells.base import Cell, fused_projection
from seqjax.cells.linear import linear_cell

MAX_SQRT_GRADIENT = 1000.0


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def sqrt_bounded_derivative(x: jax.Array, max_gradient: float = MAX_SQRT_GRADIENT) -> jax.Array:
    """``sqrt(x)``, whose derivative ``1 / (2 sqrt x)`` is capped at ``max_gradient`` (reached at ``x -> 0``)."""
    return jnp.sqrt(x)


@sqrt_bounded_derivative.defjvp
def _sqrt_jvp(max_gradient, primals, tangents):
    (x,), (dx,) = primals, tangents
    floor = 1.0 / (4.0 * max_gradient**2)  # where 1 / (2 sqrt x) reaches max_gradient
    return jnp.sqrt(x), dx / (2.0 * jnp.sqrt(jnp.maximum(x, floor)))


def rglru(
    c: float = 8.0,
    a_min: float = 0.9,
    a_max: float = 0.999,
    input_init: initializers.Initializer = initializers.lecun_normal,
) -> Cell:
    """The RG-LRU (see the module docstring): ``c`` the gate's exponent scale, ``[a_min, a_max]`` the ring of
    initial ``a``, ``0 < a_min < a_max < 1``."""
    if not 0.0 < a_min < a_max < 1.0:
        raise ValueError(f"the RG-LRU's ring needs 0 < a_min < a_max < 1, got a_min={a_min}, a_max={a_max}")

    def init_params(key, input_size: int, hidden_size: int, dtype=jnp.float32):
        k_w, k_a = jax.random.split(key)
        u = jax.random.uniform(k_a, (hidden_size,), jnp.float32)
        a = jnp.sqrt(u * (a_max**2 - a_min**2) + a_min**2)
        return {
            "w_ih": input_init(k_w, (input_size, 3 * hidden_size), dtype),
            "b": jnp.zeros((3 * hidden_size,), dtype),
            "log_a": (jnp.log(a) - jnp.log1p(-a)).astype(dtype),
        }

    def coefficients(params, u):
        k_r, k_i, v = jnp.split(u.astype(jnp.float32), 3, axis=-1)
        softplus = jnp.broadcast_to(jax.nn.softplus(-params["log_a"].astype(jnp.float32)), k_r.shape)
        log_a = -c * jax.nn.sigmoid(k_r) * softplus
        scale = sqrt_bounded_derivative(-jnp.expm1(2.0 * log_a))
        return jnp.exp(log_a), scale * jax.nn.sigmoid(k_i) * v

    def init_carry(params, batch_shape):
        log_a = params["log_a"]
        return jnp.zeros((*tuple(batch_shape), log_a.shape[-1]), precision.carry_dtype(log_a.dtype))

    return linear_cell(init_params, coefficients, init_carry, project=fused_projection, name="rglru")
