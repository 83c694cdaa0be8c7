"""seqjax cells as Flax NNX layers (seqjax.interop.flax_nnx.Recurrent): a small NNX model trained with
``nnx.Optimizer`` gives the losses and parameters of the same model written as plain functions trained with optax."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from seqjax import unroll
from seqjax.cells import LSTMCarry, learned_initial_state, lstm
from seqjax.interop.flax_nnx import Recurrent

V, E, H, B, T = 7, 3, 4, 3, 5
EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
LEARNING_RATE, STEPS = 0.05, 3


@pytest.fixture
def my_cells(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import my_cells

    return my_cells


class Tagger(nnx.Module):
    """Embedding, two seqjax layers, a linear readout: ``[b, t]`` tokens -> ``[b, t, V]`` logits. The first layer, a
    built-in LSTM, reads right to left (an option of the layer); the second, the user's IndRNN
    (examples/my_cells.py), starts from a learned initial state."""

    def __init__(self, user_cell, *, rngs):
        self.embed = nnx.Embed(V, E, rngs=rngs)
        self.backward = Recurrent(lstm(), E, H, rngs=rngs, reverse=True, fused=False)
        self.forward = Recurrent(learned_initial_state(user_cell), H, H, rngs=rngs)
        self.out = nnx.Linear(H, V, rngs=rngs)

    def __call__(self, tokens, lengths):
        ys = self.backward(self.embed(tokens), lengths=lengths).outputs
        return self.out(self.forward(ys, lengths=lengths).outputs)


def plain_params(model):
    """The model's parameters as plain arrays: the functional model's ``p``."""
    return {
        "embedding": model.embed.embedding[...],
        "backward": model.backward.cell_params(),
        "forward": model.forward.cell_params(),
        "kernel": model.out.kernel[...],
        "bias": model.out.bias[...],
    }


def functional_logits(user_cell, p, tokens, lengths):
    """``Tagger`` as plain functions of ``plain_params``."""
    ys = unroll(lstm(), p["backward"], p["embedding"][tokens], lengths=lengths, reverse=True, fused=False).outputs
    ys = unroll(learned_initial_state(user_cell), p["forward"], ys, lengths=lengths).outputs
    z = ys @ p["kernel"]
    return z + jnp.broadcast_to(p["bias"], z.shape)


def masked_loss(logits, targets, lengths):
    mask = jnp.arange(T)[None, :] < lengths[:, None]
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return jnp.sum(jnp.where(mask, nll, 0.0)) / jnp.sum(mask)


def batch(k):
    rng = np.random.default_rng(k)
    tokens = rng.integers(0, V, size=(B, T + 1)).astype(np.int32)
    return jnp.asarray(tokens[:, :-1]), jnp.asarray(tokens[:, 1:]), jnp.asarray([T, 3, 2], jnp.int32)


def test_nnx_training_equals_functional_training(my_cells):
    """``nnx.Optimizer(model, adam, wrt=nnx.Param)`` under ``nnx.jit`` against ``optax.adam`` + ``apply_updates`` on
    the same initial parameters: the same losses at every step and the same parameters after them; the learned
    initial state moves."""
    model = Tagger(my_cells.indrnn, rngs=nnx.Rngs(0))
    p = plain_params(model)
    optimizer = nnx.Optimizer(model, optax.adam(LEARNING_RATE), wrt=nnx.Param)

    @nnx.jit
    def nnx_step(model, optimizer, tokens, targets, lengths):
        loss, grads = nnx.value_and_grad(lambda m: masked_loss(m(tokens, lengths), targets, lengths))(model)
        optimizer.update(model, grads)
        return loss

    tx = optax.adam(LEARNING_RATE)

    @jax.jit
    def functional_step(p, opt_state, tokens, targets, lengths):
        loss, grads = jax.value_and_grad(
            lambda p: masked_loss(functional_logits(my_cells.indrnn, p, tokens, lengths), targets, lengths)
        )(p)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, loss

    # optax's Adam: b ** count with an int32 count; IndRNN's `u * h`: [h] with [b, h]
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        opt_state = tx.init(p)
        for k in range(STEPS):
            tokens, targets, lengths = batch(k)
            loss = nnx_step(model, optimizer, tokens, targets, lengths)
            p, opt_state, expected = functional_step(p, opt_state, tokens, targets, lengths)
            np.testing.assert_allclose(loss, expected, rtol=1e-6)
    trained = plain_params(model)
    assert jax.tree.structure(trained) == jax.tree.structure(p)
    for a, b in zip(jax.tree.leaves(trained), jax.tree.leaves(p), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(trained["forward"]["initial"])).min() > 0  # the initial state was learned


def test_params_are_the_cells_pytree_of_nnx_params():
    """``layer.params`` keeps the cell's structure (an LSTMCarry initial state included), each leaf an nnx.Param;
    ``init_carry`` broadcasts the learned state over the batch."""
    layer = Recurrent(learned_initial_state(lstm()), E, H, rngs=nnx.Rngs(1))
    leaves = jax.tree.leaves(layer.params, is_leaf=lambda x: isinstance(x, nnx.Variable))
    assert len(leaves) == 5 and all(isinstance(v, nnx.Param) for v in leaves)
    assert isinstance(layer.params["initial"], LSTMCarry) and set(layer.params["cell"]) == {"w_ih", "w_hh", "b"}
    assert layer.params["cell"]["w_ih"].shape == (E, 4 * H)
    layer.params["initial"].hidden[...] = jnp.arange(H, dtype=jnp.float32)
    carry = layer.init_carry((B,))
    np.testing.assert_array_equal(carry.hidden, np.tile(np.arange(H), (B, 1)))
    np.testing.assert_array_equal(carry.cell, np.zeros((B, H)))
