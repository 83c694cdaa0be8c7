"""User-defined cells: IndRNN (Li et al. 2018), two plain functions, no subclassing or registration; and a
diagonal linear recurrence, whose linearity ``unroll`` can use to run it with an associative scan.

    indrnn:    h_t = relu(x_t W + u * h_{t-1} + b)                  (u [h]: one recurrent weight per unit)
    diagonal:  h_t = sigma(nu) * h_{t-1} + (1 - sigma(nu)) * x_t B   (a decay in (0, 1) per unit)

Use it from any experiment or benchmark with ``--cell``: by its file, ``--cell=examples/my_cells.py:indrnn`` from
the repository's root (where a script compares cells, several, comma-separated:
``--cell=rnn,examples/my_cells.py:indrnn`` in gradient_flow, long_dependency, task_grid and the benchmarks), or by its
module, ``--cell=my_cells:indrnn``, with ``examples/`` on ``PYTHONPATH``.
"""

import jax
import jax.numpy as jnp

import seqjax


def indrnn_init(key, input_size, hidden_size, dtype=jnp.float32):
    k_w, k_u = jax.random.split(key)
    return {
        "w": jax.random.normal(k_w, (input_size, hidden_size), dtype) / jnp.sqrt(input_size).astype(dtype),
        "u": jax.random.uniform(k_u, (hidden_size,), dtype),
        "b": jnp.zeros((hidden_size,), dtype),
    }


def indrnn_step(params, h, x):
    h = jax.nn.relu(x @ params["w"] + params["u"] * h + params["b"])
    return h, h


indrnn = seqjax.Cell(indrnn_init, indrnn_step, name="indrnn")


def diagonal_init(key, input_size, hidden_size, dtype=jnp.float32):
    k_b, k_nu = jax.random.split(key)
    return {
        "b": jax.random.normal(k_b, (input_size, hidden_size), dtype) / jnp.sqrt(input_size).astype(dtype),
        "nu": jax.random.uniform(k_nu, (hidden_size,), dtype, minval=1.0, maxval=4.0),  # decays 0.73 .. 0.98
    }


def diagonal_coefficients(params, x):  # (a_t, b_t) of h_t = a_t * h_{t-1} + b_t, from the input alone
    drive = x @ params["b"]
    decay = jnp.broadcast_to(jax.nn.sigmoid(params["nu"]), drive.shape)
    return decay, (1.0 - decay) * drive


def diagonal_zeros(params, batch_shape):
    return jnp.zeros((*batch_shape, params["nu"].shape[0]), jnp.float32)


diagonal = seqjax.linear_cell(diagonal_init, diagonal_coefficients, diagonal_zeros, name="diagonal")
