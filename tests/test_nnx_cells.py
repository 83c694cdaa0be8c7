"""The built-in cells against Flax NNX's SimpleCell, LSTMCell, OptimizedLSTMCell and GRUCell with the same weights,
in float64: T steps' outputs and final carry, and the gradients of a loss on the outputs with respect to the inputs
and to every weight (each NNX weight a slice of a seqjax one, so the gradient flows back through the copy)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqjax import unroll
from seqjax.cells import gru, lstm, rnn

D, H, B, T = 3, 4, 2, 5


def blocks(a, n):
    """``[..., n*h]`` -> n arrays ``[..., h]``."""
    return jnp.split(a, n, axis=-1)


def simple_weights(p):
    return {"dense_i": {"kernel": p["w_ih"], "bias": p["b"]}, "dense_h": {"kernel": p["w_hh"]}}


def lstm_weights(p):  # gates (i, f, g, o): NNX's ii, if_, ig, io (no bias) and hi, hf, hg, ho (bias)
    wi, wh, b = blocks(p["w_ih"], 4), blocks(p["w_hh"], 4), blocks(p["b"], 4)
    out = {}
    for k, gate in enumerate(["i", "f_", "g", "o"]):
        out[f"i{gate}"] = {"kernel": wi[k]}
        out[f"h{gate.rstrip('_')}"] = {"kernel": wh[k], "bias": b[k]}
    return out


def optimized_lstm_weights(p):
    return {"dense_i": {"kernel": p["w_ih"]}, "dense_h": {"kernel": p["w_hh"], "bias": p["b"]}}


def gru_weights(p):  # NNX's GRU has no b_hn (seqjax's is held at 0 and not compared)
    return {"dense_i": {"kernel": p["w_ih"], "bias": p["b"]}, "dense_h": {"kernel": p["w_hh"]}}


CASES = {  # seqjax cell, NNX cell class, weights as NNX's, NNX carry -> (h, c or None)
    "SimpleCell": (rnn(), nnx.SimpleCell, simple_weights, lambda c: (c, None)),
    "LSTMCell": (lstm(forget_bias=0.0), nnx.LSTMCell, lstm_weights, lambda c: (c[1], c[0])),
    "OptimizedLSTMCell": (lstm(forget_bias=0.0), nnx.OptimizedLSTMCell, optimized_lstm_weights, lambda c: (c[1], c[0])),
    "GRUCell": (gru(reset_after=True), nnx.GRUCell, gru_weights, lambda c: (c, None)),
}


@pytest.mark.parametrize("name", CASES)
def test_values_and_gradients_equal_flax_nnx_cell(key, name):
    cell, nnx_cls, weights, nnx_carry = CASES[name]
    with jax.enable_x64(True):
        k_p, k_x, k_w = jax.random.split(key, 3)
        # random weights of the cell's shapes (no initialiser run: only shapes are needed, here and for NNX's)
        shapes = jax.eval_shape(lambda k: cell.init_params(k, D, H, jnp.float64), k_p)
        leaves, treedef = jax.tree.flatten(shapes)
        keys = jax.random.split(k_p, len(leaves))
        params = jax.tree.unflatten(
            treedef, [0.6 * jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)]
        )
        if "b_hn" in params:
            params["b_hn"] = jnp.zeros_like(params["b_hn"])
        xs = jax.random.normal(k_x, (B, T, D), jnp.float64)
        w = jax.random.normal(k_w, (B, T, H), jnp.float64)
        module = nnx.eval_shape(lambda: nnx_cls(D, H, dtype=jnp.float64, param_dtype=jnp.float64, rngs=nnx.Rngs(0)))
        graphdef, state = nnx.split(module)
        own = jax.tree.map(jnp.shape, nnx.to_pure_dict(state))
        assert own == jax.tree.map(jnp.shape, weights(params))  # the copy fills every NNX weight, nothing else

        def seqjax_run(p, x):
            out = unroll(cell, p, x)
            return jnp.sum(w * out.outputs), out

        def nnx_run(p, x):
            nnx.replace_by_pure_dict(state, weights(p))
            m = nnx.merge(graphdef, state)
            carry = m.initialize_carry((B, D), rngs=nnx.Rngs(0))  # zeros
            carry, ys = jax.lax.scan(lambda c, x_t: m(c, x_t), carry, jnp.swapaxes(x, 0, 1))  # NNX's step, T times
            ys = jnp.swapaxes(ys, 0, 1)
            return jnp.sum(w * ys), (ys, carry)

        def both(p, x):
            grad = lambda f: jax.value_and_grad(f, (0, 1), has_aux=True)(p, x)
            return grad(seqjax_run), grad(nnx_run)

        ((loss, out), (dp, dx)), ((ref_loss, (ref_ys, ref_carry)), (ref_dp, ref_dx)) = jax.jit(both)(params, xs)
        assert out.outputs.dtype == ref_ys.dtype == jnp.float64
        np.testing.assert_allclose(out.outputs, ref_ys, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
        hidden, cell_state = nnx_carry(ref_carry)
        np.testing.assert_allclose(jax.tree.leaves(out.carry)[0], hidden, rtol=1e-12, atol=1e-12)
        if cell_state is not None:
            np.testing.assert_allclose(out.carry.cell, cell_state, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-12)
        for key_ in ("w_ih", "w_hh", "b"):
            assert np.abs(np.asarray(ref_dp[key_])).min() > 0  # every weight has a gradient to compare
            np.testing.assert_allclose(dp[key_], ref_dp[key_], rtol=1e-10, atol=1e-12)
