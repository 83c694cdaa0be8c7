"""The Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting recurrent neural networks for long sequences").

A diagonal linear recurrence with eigenvalues inside the unit disc, stably parameterised, and a real readout::

    lambda   = exp(-exp(nu_log) + i exp(theta_log))          [n] complex, |lambda| = exp(-exp(nu_log)) < 1
    x_t      = lambda * x_{t-1} + exp(gamma_log) * (u_t B)    x [*b, n] complex, B = B_re + i B_im  [d, n]
    y_t      = Re(x_t C) + u_t D                              C = C_re + i C_im  [n, h],  D [d, h]

Initialisation (the paper's section 3): ``|lambda|`` uniform on the area of the ring ``r_min <= r <= r_max``
(``r = sqrt(U(r_min^2, r_max^2))``, so ``nu_log = log(-log r)``), its phase ``theta = U(0, max_phase)``
(``theta_log = log theta``), and ``gamma_log = log sqrt(1 - |lambda|^2)`` (the normalisation that keeps the state's
variance that of the input at initialisation; trained afterwards, as in the paper). ``B`` has entries of variance
``1 / (2 d)`` per part, ``C`` of ``1 / n``. The paper's ``D`` is a diagonal skip ``D * u_t`` because its input and
output sizes are equal; here they may differ (a first layer reads embeddings), so ``D`` is a ``[d, h]`` matrix
with entries of variance ``1 / d``.

Eigenvalues (``eigenvalues=``):
  ``"complex"``  the LRU as published (complex state).
  ``"real"``     ``lambda = exp(-exp(nu_log))`` in (0, 1), a real state and real ``B``, ``C``: no rotation.
  ``"signed"``   ``lambda = 2 exp(-exp(nu_log)) - 1`` in (-1, 1), Grazzi et al. (2025)'s map of [0, 1] onto
                 [-1, 1], which lets a diagonal linear recurrence flip signs (they show this decides whether it
                 can track state, e.g. parity). Initialised at ``+-r`` with ``r`` from the ring and random signs.
In the real variants ``gamma_log = log sqrt(1 - lambda^2)`` and ``B`` has variance ``1 / d``.

Params: ``nu_log [n]``, ``theta_log [n]`` (complex only), ``gamma_log [n]``, ``b_re [d, n]``, ``b_im [d, n]``
(complex only; ``b`` when real), ``c_re``, ``c_im [n, h]`` (``c`` when real), ``d [d, h]`` (``d [h]`` with
``skip="diagonal"``). State size ``n`` is ``state_size`` or the hidden size. Carry ``x [*b, n]``, complex64
(float32 when real); output ``y [*b, h]``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from seqjax.cells.base import Cell
from seqjax.cells.linear import linear_cell

EIGENVALUES = ("complex", "real", "signed")
SKIPS = ("matrix", "diagonal")
_TINY = 1e-7  # uniform draws start here: a radius or phase of exactly 0 would make nu_log or theta_log infinite


def lru(
    eigenvalues: str = "complex",
    *,
    r_min: float = 0.0,
    r_max: float = 1.0,
    max_phase: float = 2 * math.pi,
    state_size: int | None = None,
    skip: str = "matrix",
) -> Cell:
    """The LRU (see the module docstring). ``r_min``, ``r_max``: the ring of initial ``|lambda|``,
    ``0 <= r_min < r_max <= 1``; ``max_phase``: the largest initial phase; ``state_size``: ``n`` (None: the hidden
    size); ``skip``: ``u D`` (``"matrix"``) or the paper's ``D * u`` (``"diagonal"``). The defaults are those of the
    paper's reference code for its copy task (the disc, every phase)."""
    if eigenvalues not in EIGENVALUES:
        raise ValueError(f"unknown eigenvalues {eigenvalues!r}; known: {', '.join(EIGENVALUES)}")
    if skip not in SKIPS:
        raise ValueError(f"unknown skip {skip!r}; known: {', '.join(SKIPS)}")
    if not 0.0 <= r_min < r_max <= 1.0:
        raise ValueError(f"the LRU's ring needs 0 <= r_min < r_max <= 1, got r_min={r_min}, r_max={r_max}")
    complex_state = eigenvalues == "complex"

    def init_params(key, input_size: int, hidden_size: int, dtype=jnp.float32):
        n = state_size or hidden_size
        k_r, k_theta, k_sign, k_b, k_c, k_d = jax.random.split(key, 6)
        u = jax.random.uniform(k_r, (n,), jnp.float32, minval=_TINY)
        radius = jnp.sqrt(u * (r_max**2 - r_min**2) + r_min**2)
        params = {}
        if complex_state:
            params["nu_log"] = jnp.log(-jnp.log(radius))
            params["theta_log"] = jnp.log(max_phase * jax.random.uniform(k_theta, (n,), jnp.float32, minval=_TINY))
            b_parts, c_parts = ("b_re", "b_im"), ("c_re", "c_im")
            b_scale = 1.0 / math.sqrt(2 * input_size)
        else:
            if eigenvalues == "signed":
                sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (n,)), 1.0, -1.0)
                radius = (1.0 + sign * radius) / 2.0  # exp(-exp(nu)) whose 2 x - 1 is +-r
            params["nu_log"] = jnp.log(-jnp.log(radius))
            b_parts, c_parts = ("b",), ("c",)
            b_scale = 1.0 / math.sqrt(input_size)
        params["gamma_log"] = jnp.log(jnp.sqrt(1.0 - jnp.abs(_eigenvalues(params, eigenvalues)) ** 2))
        for name, key_b in zip(b_parts, jax.random.split(k_b, len(b_parts)), strict=True):
            params[name] = b_scale * jax.random.normal(key_b, (input_size, n), jnp.float32)
        for name, key_c in zip(c_parts, jax.random.split(k_c, len(c_parts)), strict=True):
            params[name] = jax.random.normal(key_c, (n, hidden_size), jnp.float32) / math.sqrt(n)
        if skip == "diagonal":
            if input_size != hidden_size:
                raise ValueError(f"the LRU's diagonal skip needs input size {input_size} = hidden size {hidden_size}")
            params["d"] = jax.random.normal(k_d, (hidden_size,), jnp.float32)
        else:
            params["d"] = jax.random.normal(k_d, (input_size, hidden_size), jnp.float32) / math.sqrt(input_size)
        return jax.tree.map(lambda a: a.astype(dtype), params)

    def project(params, xs):
        """``[..., d] -> [..., p + h]``: ``u B`` (real and imaginary parts, ``p = 2 n``; ``p = n`` when real) and
        the skip ``u D`` (or ``D * u``), for all positions at once."""
        xs = xs.astype(jnp.float32)
        parts = [xs @ params[name].astype(jnp.float32) for name in _b_names(params)]
        d = params["d"].astype(jnp.float32)
        skip_part = xs * jnp.broadcast_to(d, xs.shape) if d.ndim == 1 else xs @ d
        return jnp.concatenate([*parts, skip_part], axis=-1)

    def coefficients(params, u):
        n = params["nu_log"].shape[-1]
        b_parts = u[..., : 2 * n] if complex_state else u[..., :n]
        bu = jax.lax.complex(b_parts[..., :n], b_parts[..., n:]) if complex_state else b_parts
        lam = jnp.broadcast_to(_eigenvalues(params, eigenvalues), bu.shape)
        gamma = jnp.exp(params["gamma_log"].astype(jnp.float32)).astype(bu.dtype)
        return lam, jnp.broadcast_to(gamma, bu.shape) * bu

    def readout(params, x, u):
        n = params["nu_log"].shape[-1]
        skip = u[..., (2 * n if complex_state else n) :]
        if complex_state:
            c_re, c_im = params["c_re"].astype(jnp.float32), params["c_im"].astype(jnp.float32)
            y = jnp.real(x) @ c_re - jnp.imag(x) @ c_im + skip
        else:
            y = x @ params["c"].astype(jnp.float32) + skip
        return y.astype(params["d"].dtype)

    def init_carry(params, batch_shape):
        dtype = jnp.complex64 if complex_state else jnp.float32
        return jnp.zeros((*tuple(batch_shape), params["nu_log"].shape[-1]), dtype)

    name = "lru" if complex_state else f"lru_{eigenvalues}"
    return linear_cell(init_params, coefficients, init_carry, project=project, readout=readout, name=name)


def _eigenvalues(params, eigenvalues: str) -> jax.Array:
    """``lambda [n]`` from the stable parameterisation (complex64, or float32 for the real variants)."""
    modulus = jnp.exp(-jnp.exp(params["nu_log"].astype(jnp.float32)))
    if eigenvalues == "complex":
        phase = jnp.exp(params["theta_log"].astype(jnp.float32))
        return jax.lax.complex(modulus * jnp.cos(phase), modulus * jnp.sin(phase))
    return modulus if eigenvalues == "real" else 2.0 * modulus - 1.0


def _b_names(params) -> tuple[str, ...]:
    return ("b_re", "b_im") if "b_re" in params else ("b",)
