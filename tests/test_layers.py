"""``stacked``, ``bidirectional`` and ``unroll_layers`` against compositions built by hand (unrolls, loops over
reversed prefixes, per-example loops over steps)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import (
    CELLS,
    B,
    D,
    H,
    T,
    assert_tree_close,
    cell_context,
    first_leaf,
    loop,
    make_params,
    normal,
    per_example,
    random_like,
    stack_time,
    zero_eps,
)

from seqjax import LSTMCarry, gradflow, gru, lstm, rnn, unroll
from seqjax.cells import step_input
from seqjax.layers import bidirectional, init_layers, stacked, unroll_layers

LENGTHS = (4, T, 1)


@pytest.mark.parametrize(
    ("layers", "lengths"),
    [
        pytest.param(("lstm", "gru"), LENGTHS, id="lstm-gru-lengths"),
        pytest.param(("rnn", "lstm_peephole", "rnn_relu"), None, id="rnn-lstm-rnn"),
        pytest.param(("indrnn", "gru_cho"), None, id="indrnn-gru"),  # a first layer without project
    ],
)
def test_stacked_vs_composed_unrolls(layers, lengths):
    """stacked(cells) vs unrolling layer 1, feeding its outputs to layer 2, ... with the same params."""
    cells = [CELLS[name] for name in layers]
    deep = stacked(cells)
    params, xs = make_params(deep, seed=90), normal(25, (B, T, D))
    assert isinstance(params, tuple) and len(params) == len(cells)
    assert (deep.project is None) == (cells[0].project is None)
    lengths_arg = None if lengths is None else jnp.array(lengths)

    @jax.jit
    def run(params, xs):
        by_hand, inputs = [], xs
        for cell, p in zip(cells, params, strict=True):
            layer = unroll(cell, p, inputs, lengths=lengths_arg)
            by_hand.append(layer.carry)
            inputs = layer.outputs
        return unroll(deep, params, xs, lengths=lengths_arg), tuple(by_hand), inputs

    with cell_context("indrnn" if "indrnn" in layers else ""):
        result, carries, outputs = run(params, xs)
    assert_tree_close(result.outputs, outputs)
    assert_tree_close(result.carry, carries)
    if lengths is not None:
        for i, length in enumerate(lengths):
            np.testing.assert_array_equal(result.outputs[i, length:], 0.0)


def stacked_loop(cells, params, xs, eps):
    """Two layers by hand; eps[t][l] is added to layer l's carry after step t, the output read from the top carry."""
    carries = [cell.init_carry(p, (xs.shape[0],)) for cell, p in zip(cells, params, strict=True)]
    ys = []
    for t in range(xs.shape[1]):
        inputs = xs[:, t]
        for layer, (cell, p) in enumerate(zip(cells, params, strict=True)):
            carries[layer], inputs = step_input(cell, p, carries[layer], inputs)
        carries = [jax.tree.map(jnp.add, c, e) for c, e in zip(carries, eps[t], strict=True)]
        ys.append(first_leaf(carries[-1]))
    return jnp.stack(ys, axis=1)


def test_stacked_probes():
    """carry_gradients on a stacked cell: one [b, t, ...] gradient per layer, vs jax.grad of the perturbed loop.

    The probe perturbs each layer's carry after the whole (all-layer) step: for the top layer that is all of
    dL/dh_t; for a lower layer it is the gradient through its recurrence (the next step), not through the layer
    above at the same step.
    """
    cells = [lstm(), gru()]
    deep = stacked(cells)
    params, xs = make_params(deep, seed=100), normal(26, (B, T, D))
    v, w = normal(27, (B, H)), normal(28, (B, T, H))

    def loss_of_outputs(outputs):
        return jnp.sum(outputs[:, -1] * v) + jnp.sum(jnp.tanh(outputs) * w)

    _, grads = jax.jit(lambda p, x: gradflow.carry_gradients(lambda r: loss_of_outputs(r.outputs), deep, p, x))(
        params, xs
    )
    assert isinstance(grads, tuple) and len(grads) == 2
    assert isinstance(grads[0], LSTMCarry)
    assert all(leaf.shape == (B, T, H) for leaf in jax.tree.leaves(grads))

    eps = zero_eps(deep.init_carry(params, (B,)), T)
    expected = stack_time(jax.grad(lambda eps: loss_of_outputs(stacked_loop(cells, params, xs, eps)))(eps))
    assert_tree_close(grads, expected)
    norms = gradflow.step_norms(grads)
    assert jax.tree.structure(norms) == jax.tree.structure(grads)


def backward_by_hand(cell, params, xs, lengths):
    """Per example: reverse the valid prefix, run a forward loop, reverse the outputs back; zero padding."""
    finals, outputs = [], []
    for i, length in enumerate(lengths):
        carry, ys, _ = loop(cell, params, xs[i : i + 1, :length][:, ::-1])
        finals.append(carry)
        outputs.append(jnp.concatenate([ys[:, ::-1], jnp.zeros((1, xs.shape[1] - length, H), ys.dtype)], axis=1))
    return jax.tree.map(lambda *c: jnp.concatenate(c), *finals), jnp.concatenate(outputs)


def forward_by_hand(cell, params, xs, lengths):
    finals, outputs = [], []
    for i, length in enumerate(lengths):
        carry, ys, _ = loop(cell, params, xs[i : i + 1, :length])
        finals.append(carry)
        outputs.append(jnp.concatenate([ys, jnp.zeros((1, xs.shape[1] - length, H), ys.dtype)], axis=1))
    return jax.tree.map(lambda *c: jnp.concatenate(c), *finals), jnp.concatenate(outputs)


@pytest.mark.parametrize("lengths", [LENGTHS, None], ids=["lengths", "full"])
def test_bidirectional_vs_by_hand(lengths):
    """bidirectional(lstm, gru) vs a forward loop and a backward loop over each example's reversed valid prefix."""
    forward_cell, backward_cell = lstm(peephole=True), gru(reset_after=False)
    params = (make_params(forward_cell, seed=110), make_params(backward_cell, seed=120))
    xs = normal(29, (B, T, D))
    lengths_arg = None if lengths is None else jnp.array(lengths)
    result = jax.jit(
        lambda p, x: bidirectional(forward_cell, backward_cell, p, x, lengths=lengths_arg, return_carries=True)
    )(params, xs)

    valid = (T,) * B if lengths is None else lengths
    fwd_carry, fwd_outputs = forward_by_hand(forward_cell, params[0], xs, valid)
    bwd_carry, bwd_outputs = backward_by_hand(backward_cell, params[1], xs, valid)
    assert result.outputs.shape == (B, T, 2 * H)
    assert_tree_close(result.outputs, jnp.concatenate([fwd_outputs, bwd_outputs], axis=-1))
    assert_tree_close(result.carry, (fwd_carry, bwd_carry))
    for i, length in enumerate(valid):
        np.testing.assert_array_equal(result.outputs[i, length:], 0.0)
    fwd_carries, bwd_carries = result.carries
    assert_tree_close(jax.tree.map(lambda c: c[:, -1], fwd_carries), fwd_carry)  # padding keeps the carry
    assert_tree_close(bwd_carries[:, 0], bwd_carry)  # the backward pass ends at position 0
    if lengths is None:
        assert_tree_close(fwd_carries, stack_time(loop(forward_cell, params[0], xs)[2]))


def test_stacked_needs_a_cell():
    """stacked([]) -> ValueError."""
    with pytest.raises(ValueError, match="at least one cell"):
        stacked([])
    assert stacked([rnn()]).name == "stacked_rnn"


def dropout_by_hand(x, rate, key):
    """Inverted dropout written out in NumPy: keep where ``bernoulli(key, 1 - rate)``, scale by ``1 / (1 - rate)``."""
    if key is None or rate == 0.0:
        return x
    keep = np.asarray(jax.random.bernoulli(key, 1.0 - rate, x.shape))
    return jnp.asarray(np.where(keep, np.asarray(x) / np.float32(1.0 - rate), np.float32(0.0)))


def layers_by_hand(cell, layers, xs, lengths, both_ways, carries, rates, keys):
    """Layer by layer: dropout on its input, then each example alone over its valid prefix (backwards too)."""
    finals = []
    for params, carry, rate, key in zip(layers, carries, rates, keys, strict=True):
        xs = dropout_by_hand(xs, rate, key)
        if both_ways:
            forward_carry, backward_carry = (None, None) if carry is None else carry
            forward = per_example(cell, params[0], xs, lengths, carry=forward_carry)
            backward = per_example(cell, params[1], xs, lengths, carry=backward_carry, reverse=True)
            finals.append((forward[0], backward[0]))
            xs = jnp.concatenate([forward[1], backward[1]], axis=-1)
        else:
            carry, xs = per_example(cell, params, xs, lengths, carry=carry)
            finals.append(carry)
    return tuple(finals), xs


def random_layers(cell, num_layers, both_ways, seed):
    """Per layer, params of the shapes ``init_layers`` makes, every leaf random (``make_params``)."""
    sizes = [D] + [(2 if both_ways else 1) * H] * (num_layers - 1)
    layers = []
    for layer, d in enumerate(sizes):
        forward = make_params(cell, seed=seed + 100 * layer, d=d)
        layers.append((forward, make_params(cell, seed=seed + 100 * layer + 50, d=d)) if both_ways else forward)
    return layers


@pytest.mark.parametrize(
    ("name", "num_layers", "both_ways", "lengths", "rates", "with_carries"),
    [
        pytest.param("lstm", 2, True, LENGTHS, (0.3, 0.5), True, id="lstm-2-both-ways-lengths-dropout-carries"),
        pytest.param("gru", 3, False, None, 0.25, False, id="gru-3-one-way-dropout"),
        pytest.param("gru_cho", 1, True, None, 0.0, True, id="gru_cho-1-both-ways-carries"),
        pytest.param("lstm_peephole", 2, False, LENGTHS, (0.0, 0.4), True, id="lstm_peephole-2-lengths-carries"),
    ],
)
def test_unroll_layers_vs_per_example_loops(name, num_layers, both_ways, lengths, rates, with_carries):
    """unroll_layers vs dropout written out and each example's own Python loop over steps, layer by layer."""
    cell = CELLS[name]
    layers = random_layers(cell, num_layers, both_ways, seed=130)
    shapes = jax.eval_shape(lambda: init_layers(cell, jax.random.split(jax.random.key(0), num_layers), D, H, both_ways))
    assert jax.tree.structure(shapes) == jax.tree.structure(layers)
    assert [a.shape for a in jax.tree.leaves(shapes)] == [a.shape for a in jax.tree.leaves(layers)]
    xs = normal(31, (B, T, D))
    keys = list(jax.random.split(jax.random.key(3), num_layers))
    rate_list = list(rates) if isinstance(rates, tuple) else [rates] * num_layers
    carries = None
    if with_carries:
        zeros = [cell.init_carry(p[0] if both_ways else p, (B,)) for p in layers]
        carries = [random_like(z, 200 + 10 * layer) for layer, z in enumerate(zeros)]
        if both_ways:
            carries = [(c, random_like(zeros[layer], 205 + 10 * layer)) for layer, c in enumerate(carries)]
    lengths_arg = None if lengths is None else jnp.array(lengths)

    result = jax.jit(
        lambda layers, xs, carries, keys: unroll_layers(
            cell,
            layers,
            xs,
            both_ways=both_ways,
            lengths=lengths_arg,
            initial_carries=carries,
            dropout_rates=rates,
            dropout_keys=keys,
        )
    )(layers, xs, carries, keys)

    valid = (T,) * B if lengths is None else lengths
    expected_finals, expected_outputs = layers_by_hand(
        cell, layers, xs, valid, both_ways, carries or [None] * num_layers, rate_list, keys
    )
    assert result.outputs.shape == (B, T, (2 if both_ways else 1) * H)
    assert_tree_close(result.outputs, expected_outputs)
    assert_tree_close(result.carry, expected_finals)
    assert result.carries is None
    for i, length in enumerate(valid):
        np.testing.assert_array_equal(result.outputs[i, length:], 0.0)
    if any(rate_list):  # the masks matter: without the keys the outputs differ
        evaluation = unroll_layers(
            cell, layers, xs, both_ways=both_ways, lengths=lengths_arg, initial_carries=carries, dropout_rates=rates
        )
        assert not np.allclose(evaluation.outputs, result.outputs)


def test_unroll_layers_refuses_mismatched_arguments():
    """One rate, key and carry per layer, at least one layer, and no per-direction unroll options."""
    cell = CELLS["rnn"]
    layers, xs = random_layers(cell, 2, False, seed=140), normal(32, (B, T, D))
    with pytest.raises(ValueError, match="dropout_rates has 3 entries for 2 layers"):
        unroll_layers(cell, layers, xs, dropout_rates=(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="dropout_keys has 1 entries for 2 layers"):
        unroll_layers(cell, layers, xs, dropout_keys=[jax.random.key(0)])
    with pytest.raises(ValueError, match="initial_carries has 1 entries"):
        unroll_layers(cell, layers, xs, initial_carries=[cell.init_carry(layers[0], (B,))])
    with pytest.raises(ValueError, match="cannot pass probe, reverse"):
        unroll_layers(cell, layers, xs, reverse=True, probe=None)
    with pytest.raises(ValueError, match="at least one layer"):
        unroll_layers(cell, [], xs)
