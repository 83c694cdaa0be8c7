"""Fused sequence paths (hand-written VJPs) against the per-step scan that autodiff differentiates.

The plain path is itself checked against Python loops and Flax's cells elsewhere; here the fused
path must give the same values and gradients (params, inputs, initial carry) with and without
lengths, reverse and remat, must actually be taken when asked, and must agree with finite
differences on its own.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from reference import CELLS, B, D, H, T, assert_tree_close, make_params, normal, random_like

from seqjax import unroll
from seqjax.cells.base import matmul_rows
from seqjax.scan import fused_by_default

FUSED_CELLS = [name for name, cell in CELLS.items() if cell.fused is not None]
LENGTHS = jnp.array([T, 3, 0])  # full, partial and empty sequences


def test_the_builtin_cells_offer_fused_paths():
    assert FUSED_CELLS == ["rnn", "rnn_relu", "lstm", "gru"]


def _loss_and_grads(cell, params, xs, carry0, weights, **kwargs):
    def loss(params, xs, carry0):
        result = unroll(cell, params, xs, initial_carry=carry0, **kwargs)
        final = jax.tree.leaves(result.carry)
        return jnp.sum(result.outputs * weights) + sum(jnp.sum(jnp.sin(leaf)) for leaf in final)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(params, xs, carry0)


@pytest.mark.parametrize("name", FUSED_CELLS)
def test_fused_equals_the_scanned_step(name):
    cell = CELLS[name]
    params, xs = make_params(cell, seed=3), normal(1, (B, T, D))
    carry0 = random_like(cell.init_carry(params, (B,)), seed=20)
    weights = normal(2, (B, T, H))
    # The plain case and the one that exercises everything at once; for the LSTM (two carry leaves, the most
    # involved derivative) three more, so that every pair of the options' values is taken together.
    combinations = [(None, False, False), (LENGTHS, True, True)]
    if name == "lstm":
        combinations += [(None, True, True), (LENGTHS, False, True), (LENGTHS, True, False)]
    for lengths, reverse, remat in combinations:
        options = {"lengths": lengths, "reverse": reverse, "remat": remat}
        plain = _loss_and_grads(cell, params, xs, carry0, weights, fused=False, **options)
        fused = _loss_and_grads(cell, params, xs, carry0, weights, fused=True, **options)
        assert_tree_close(fused, plain, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", FUSED_CELLS)
def test_fused_vjp_matches_finite_differences(name):
    cell = CELLS[name]
    params, xs = make_params(cell, seed=5, scale=0.3), normal(6, (2, 4, D), scale=0.5)
    valid = jnp.array([[True, True], [True, False], [True, False], [False, False]])  # [t, b]
    carry0 = random_like(cell.init_carry(params, (2,)), seed=30, scale=0.5)
    for remat in (False, True):

        def run(params, xs, carry0, remat=remat):
            carry, ys = cell.fused(params, jnp.swapaxes(xs, 0, 1), carry0, valid, remat)
            return jnp.sum(ys * jnp.broadcast_to(jnp.arange(1.0, 1.0 + H), ys.shape)) + sum(
                jnp.sum(leaf * (leaf + 2)) for leaf in jax.tree.leaves(carry)
            )

        check_grads(run, (params, xs, carry0), order=1, modes=["rev"], eps=1e-2, atol=2e-2, rtol=2e-2)


def _uses_custom_vjp(fn, *args) -> bool:
    return "custom_vjp_call" in str(jax.make_jaxpr(fn)(*args))


def test_the_fused_path_is_taken_when_it_applies_and_only_then():
    """At the test shapes (B*H = 12) ``fused=None`` takes it too: small problems are fused on every platform."""
    cell = CELLS["lstm"]
    params, xs = make_params(cell), normal(1, (B, T, D))
    assert _uses_custom_vjp(lambda p, x: unroll(cell, p, x).outputs, params, xs)
    assert _uses_custom_vjp(lambda p, x: unroll(cell, p, x, lengths=LENGTHS, reverse=True).outputs, params, xs)
    assert not _uses_custom_vjp(lambda p, x: unroll(cell, p, x, fused=False).outputs, params, xs)
    assert not _uses_custom_vjp(lambda p, x: unroll(cell, p, x, return_carries=True).outputs, params, xs)
    probe = jax.tree.map(lambda a: jnp.zeros((B, T, *a.shape[1:])), cell.init_carry(params, (B,)))
    assert not _uses_custom_vjp(lambda p, x: unroll(cell, p, x, probe=probe).outputs, params, xs)
    with pytest.raises(ValueError, match="probes need the per-step scan"):
        unroll(cell, params, xs, probe=probe, fused=True)
    gru_cho = CELLS["gru_cho"]
    with pytest.raises(ValueError, match="cell 'gru_cho' has no fused recurrence"):
        unroll(gru_cho, make_params(gru_cho), xs, fused=True)


@pytest.mark.parametrize(
    ("batch", "hidden", "expected"),
    [(2, 64, True), (64, 64, False), (16, 1024, True), (64, 256, False), (128, 512, True)],
)
def test_fused_none_follows_the_shape_rule(batch, hidden, expected):
    """``fused=None`` takes the fused path exactly where ``fused_by_default`` says (CPU: batch small next to hidden)."""
    cell = CELLS["gru"]
    params, xs = make_params(cell, d=D, h=hidden), jnp.zeros((batch, T, D))
    assert fused_by_default(batch, hidden, "cpu") is expected
    assert fused_by_default(batch, hidden, "gpu") is True
    taken = _uses_custom_vjp(lambda p, x: unroll(cell, p, x).outputs, params, xs)
    assert taken is fused_by_default(batch, hidden, jax.default_backend())


@pytest.mark.parametrize("shape", [(5,), (4, 5), (3, 4, 5)])
def test_matmul_rows_is_the_plain_product(shape):
    """The 2-D form of the input projection against ``x @ w`` on ``x``'s own shape: values and both gradients."""
    x, w, g = normal(4, shape), normal(5, (5, 6)), normal(6, (*shape[:-1], 6))

    def plain(x, w):
        return jnp.sum((x @ w) * g)

    def rows(x, w):
        return jnp.sum(matmul_rows(x, w) * g)

    np.testing.assert_allclose(matmul_rows(x, w), x @ w, rtol=1e-6, atol=1e-6)
    assert matmul_rows(x, w).shape == (*shape[:-1], 6)
    assert_tree_close(jax.grad(rows, argnums=(0, 1))(x, w), jax.grad(plain, argnums=(0, 1))(x, w))
