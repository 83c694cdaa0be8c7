"""A user-defined cell: IndRNN (Li et al. 2018), two plain functions, no subclassing or registration.

    h_t = relu(x_t W + u * h_{t-1} + b)        (u [h]: one recurrent weight per unit)

Use it from any experiment by its file, ``--cells=rnn,lstm,gru,examples/my_cells.py:indrnn`` (gradient_flow,
long_dependency) or ``--cell=examples/my_cells.py:indrnn`` (language_model, sentiment, tagging, ...), or by its
module, ``my_cells:indrnn``, with ``examples/`` on ``PYTHONPATH``.
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
