"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs all we needed?"): GRU and LSTM with gates of the input alone.

minGRU::

    z_t = sigma(x_t W_z + b_z)        h~_t = g(x_t W_h + b_h)
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t,    y_t = h_t

and with ``eigenvalues="signed"`` (``mingru_signed``) the state's multiplier ``a_t = 1 - z_t`` in (0, 1) is
stretched to ``2 a_t - 1 = 1 - 2 z_t`` in (-1, 1), as Grazzi et al. (2025, "Unlocking state-tracking in linear RNNs
through negative eigenvalues") do for Mamba and DeltaNet::

    h_t = (1 - 2 z_t) * h_{t-1} + z_t * h~_t

A diagonal recurrence whose multipliers stay in [0, 1] cannot hold parity at every length (their theorem 1): a
multiplier near -1 flips the state's sign on a one and keeps it on a zero.

minLSTM (its gates normalised to sum to one, the paper's length-independent scaling)::

    f_t = sigma(x_t W_f + b_f)   i_t = sigma(x_t W_i + b_i)   h~_t = g(x_t W_h + b_h)
    f'_t = f_t / (f_t + i_t)     i'_t = i_t / (f_t + i_t)
    h_t = f'_t * h_{t-1} + i'_t * h~_t,    y_t = h_t

``g`` is the identity, or with ``activation="g"`` the paper's ``g(x) = x + 1/2`` for ``x >= 0`` and ``sigma(x)``
below: positive, continuous, so that every coefficient is positive and the recurrence can run in log space
(``seqjax.cells.linear.log_scan``), the paper's numerically stable parallel form. Both recurrences are linear in
``h`` (``seqjax.cells.linear``): ``unroll`` evaluates them step by step or with an associative scan.

Params: ``w_ih [d, g h]``, ``b [g h]`` (g = 2 for minGRU: z, h~; g = 3 for minLSTM: f, i, h~). Carry ``h [*b, h]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqjax import initializers, precision
from seqjax.cells.base import Cell, fused_projection
from seqjax.cells.linear import linear_cell

ACTIVATIONS = ("identity", "g")
EIGENVALUES = ("positive", "signed")


def g(x: jax.Array) -> jax.Array:
    """The paper's positive activation: ``x + 1/2`` for ``x >= 0``, ``sigma(x)`` below."""
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


def log_g(x: jax.Array) -> jax.Array:
    """``log g(x)``, without overflow: ``log(x + 1/2)`` for ``x >= 0``, ``-softplus(-x)`` below."""
    return jnp.where(x >= 0, jnp.log(jax.nn.relu(x) + 0.5), -jax.nn.softplus(-x))


def mingru(
    activation: str = "identity",
    input_init: initializers.Initializer = initializers.lecun_normal,
    eigenvalues: str = "positive",
) -> Cell:
    """minGRU (see the module docstring). ``activation``: ``"identity"`` or ``"g"`` (then the parallel path runs
    in log space; an initial carry of any sign enters it as ``A_t h_0``, see ``seqjax.scan``). ``eigenvalues``:
    ``"positive"`` (the paper's ``1 - z`` in (0, 1)) or ``"signed"`` (``1 - 2 z`` in (-1, 1); no log-space form)."""
    candidate = _candidate(activation)
    if eigenvalues not in EIGENVALUES:
        raise ValueError(f"unknown eigenvalues {eigenvalues!r}; known: {', '.join(EIGENVALUES)}")
    signed = eigenvalues == "signed"
    if signed and activation == "g":
        raise ValueError("signed eigenvalues have no log-space form: use activation='identity'")

    def coefficients(params, u):
        k_z, k_h = jnp.split(u.astype(jnp.float32), 2, axis=-1)
        z = jax.nn.sigmoid(k_z)
        return 1.0 - (2.0 if signed else 1.0) * z, z * candidate(k_h)

    if signed:
        return _minimal_cell("mingru_signed", 2, coefficients, None, activation, input_init)

    def log_coefficients(params, u):
        k_z, k_h = jnp.split(u.astype(jnp.float32), 2, axis=-1)
        return -jax.nn.softplus(k_z), -jax.nn.softplus(-k_z) + log_g(k_h)  # log(1 - z), log z + log g

    return _minimal_cell("mingru", 2, coefficients, log_coefficients, activation, input_init)


def minlstm(activation: str = "identity", input_init: initializers.Initializer = initializers.lecun_normal) -> Cell:
    """minLSTM (see the module docstring). ``activation``: ``"identity"`` or ``"g"`` (log space, as ``mingru``)."""
    candidate = _candidate(activation)

    def coefficients(params, u):
        k_f, k_i, k_h = jnp.split(u.astype(jnp.float32), 3, axis=-1)
        f, i = jax.nn.sigmoid(k_f), jax.nn.sigmoid(k_i)
        return f / (f + i), i / (f + i) * candidate(k_h)

    def log_coefficients(params, u):
        k_f, k_i, k_h = jnp.split(u.astype(jnp.float32), 3, axis=-1)
        difference = jax.nn.softplus(-k_f) - jax.nn.softplus(-k_i)  # log i - log f
        return -jax.nn.softplus(difference), -jax.nn.softplus(-difference) + log_g(k_h)  # log f', log i' + log g

    return _minimal_cell("minlstm", 3, coefficients, log_coefficients, activation, input_init)


def _minimal_cell(name: str, gates: int, coefficients, log_coefficients, activation: str, input_init) -> Cell:
    """The cell of ``gates`` fused input blocks; its log-space form only with the positive ``g``."""
    return linear_cell(
        _init_params(gates, input_init),
        coefficients,
        _zeros(gates),
        project=fused_projection,
        log_coefficients=log_coefficients if activation == "g" else None,
        name=name if activation == "identity" else f"{name}_g",
    )


def _candidate(activation: str):
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
    return g if activation == "g" else (lambda x: x)


def _init_params(gates: int, input_init: initializers.Initializer):
    def init_params(key, input_size: int, hidden_size: int, dtype=jnp.float32):
        return {
            "w_ih": input_init(key, (input_size, gates * hidden_size), dtype),
            "b": jnp.zeros((gates * hidden_size,), dtype),
        }

    return init_params


def _zeros(gates: int):
    def init_carry(params, batch_shape):
        b = params["b"]
        return jnp.zeros((*tuple(batch_shape), b.shape[-1] // gates), precision.carry_dtype(b.dtype))

    return init_carry
