"""Independent references for the scan, layers and gradflow tests: Python loops over ``step_input``, NumPy.

Nothing here calls ``unroll`` or the gradient probes: the loops below are what those functions must equal.
"""

import contextlib
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

import seqjax
from seqjax.cells import step_input

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
import my_cells  # the user's cell lives outside the package, in examples/

B, T, D, H = 3, 7, 3, 4  # T = 7: divisible by none of the scan unroll factors 2, 3

CELLS = {
    "rnn": seqjax.rnn(),
    "rnn_relu": seqjax.rnn("relu"),
    "lstm": seqjax.lstm(),
    "lstm_peephole": seqjax.lstm(peephole=True),
    "gru": seqjax.gru(),
    "gru_cho": seqjax.gru(reset_after=False),
    "indrnn": my_cells.indrnn,
}
CELL_NAMES = tuple(CELLS)


def cell_context(name):
    """The user's IndRNN writes ``u * h`` with ``u [h]`` and ``h [b, h]``: allow rank promotion for it alone."""
    return jax.numpy_rank_promotion("allow") if name == "indrnn" else contextlib.nullcontext()


def normal(seed, shape, dtype=jnp.float32, scale=1.0):
    """scale * N(0, 1) from NumPy's generator: data without compiling anything."""
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), dtype=dtype)


def make_params(cell, seed=0, d=D, h=H, dtype=jnp.float32, scale=0.5):
    """Params shaped as ``cell.init_params`` makes them, every leaf (biases, b_hn, peepholes) scale * N(0, 1).

    Only the shapes come from ``init_params`` (``jax.eval_shape``): zero-initialised terms become nonzero, so
    every term of every cell matters.
    """
    shapes = jax.eval_shape(lambda: cell.init_params(jax.random.key(0), d, h, dtype))
    leaves, treedef = jax.tree.flatten(shapes)
    new = [normal(seed + i, leaf.shape, leaf.dtype, scale) for i, leaf in enumerate(leaves)]
    return jax.tree.unflatten(treedef, new)


def random_like(tree, seed, scale=1.0):
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(treedef, [normal(seed + i, a.shape, a.dtype, scale) for i, a in enumerate(leaves)])


def first_leaf(carry):
    """The output read from a carry, for single cells: ``h`` (LSTM: ``carry.hidden``, the first leaf)."""
    return jax.tree.leaves(carry)[0]


def stack_time(trees):
    """A list over t of ``[b, ...]`` pytrees -> one pytree of ``[b, t, ...]``."""
    return jax.tree.map(lambda *xs: jnp.stack(xs, axis=1), *trees)


def concat_batch(trees):
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *trees)


def at(a, index, axis):
    """``a`` at ``index`` along ``axis`` (kept, size 1). A dynamic slice: one compiled op for every index."""
    return jax.lax.dynamic_slice_in_dim(a, np.int32(index), 1, axis)


def take_batch(tree, i):
    return jax.tree.map(lambda a: at(a, i, 0), tree)


def step_of(xs, t):
    return at(xs, t, 1)[:, 0]


def loop(cell, params, xs, carry=None, eps=None, readout=first_leaf):
    """The unroller as a Python loop over ``step_input``, batch-major ``xs [b, t, d]``.

    With ``eps`` (a list over t of carry-shaped perturbations): ``carry_t = step(...) + eps_t`` and the
    output ``y_t = readout(carry_t)`` is read from the perturbed carry, so d loss / d eps_t = dL/dcarry_t.
    Returns ``(final carry, outputs [b, t, h], list of per-step carries)``.
    """
    carry = cell.init_carry(params, (xs.shape[0],)) if carry is None else carry
    ys, carries = [], []
    for t in range(xs.shape[1]):
        carry, y = step_input(cell, params, carry, step_of(xs, t))
        if eps is not None:
            carry = jax.tree.map(jnp.add, carry, eps[t])
            y = readout(carry)
        ys.append(y)
        carries.append(carry)
    outputs = jnp.stack(ys, axis=1) if ys else None
    return carry, outputs, carries


def per_example(cell, params, xs, lengths, carry=None, reverse=False, eps=None, readout=first_leaf):
    """Each example run alone on its unpadded prefix ``xs[i, :L_i]`` (time-reversed when ``reverse``).

    Outputs go back to their original positions and are zero beyond ``L_i``; the final carry is the carry
    after the example's last read step (its initial carry when ``L_i = 0``). ``eps`` is a list over t of
    batch-shaped perturbations; example i uses ``eps[t][i]`` at the position it reads at time t.
    """
    batch, num_steps = xs.shape[:2]
    carry = cell.init_carry(params, (batch,)) if carry is None else carry
    finals, outputs = [], []
    for i, length in enumerate(int(n) for n in lengths):
        positions = list(range(length))[::-1] if reverse else list(range(length))
        c = take_batch(carry, i)
        ys = {}
        for t in positions:
            c, y = step_input(cell, params, c, step_of(take_batch(xs, i), t))
            if eps is not None:
                c = jax.tree.map(jnp.add, c, take_batch(eps[t], i))
                y = readout(c)
            ys[t] = y
        finals.append(c)
        zero = jnp.zeros_like(first_leaf(c))
        outputs.append(jnp.stack([ys.get(t, zero) for t in range(num_steps)], axis=1))
    return concat_batch(finals), jnp.concatenate(outputs, axis=0)


def zero_eps(carry_template, num_steps):
    return [jax.tree.map(jnp.zeros_like, carry_template) for _ in range(num_steps)]


def assert_tree_close(actual, expected, rtol=1e-5, atol=1e-6):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert a.shape == e.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol)


def loop_carry_gradients(cell, params, xs, loss_of_outputs, lengths=None, readout=first_leaf):
    """dL/dcarry_t as jax.grad w.r.t. explicit per-step perturbations eps_t of a Python loop (see ``loop``).

    With ``lengths``, each example runs alone on its prefix: a padded step has no eps to differentiate, so its
    gradient is zero. Returns the gradients stacked like the carries, ``[b, t, ...]`` per leaf.
    """
    eps = zero_eps(cell.init_carry(params, (xs.shape[0],)), xs.shape[1])

    def loss(eps):
        if lengths is None:
            outputs = loop(cell, params, xs, eps=eps, readout=readout)[1]
        else:
            outputs = per_example(cell, params, xs, lengths, eps=eps, readout=readout)[1]
        return loss_of_outputs(outputs)

    return stack_time(jax.grad(loss)(eps))
