"""``unroll`` and ``truncated_unroll`` against Python loops over ``step_input`` (see ``reference.py``).

Every ``unroll`` call is compiled (on CPU a scan costs ~0.5 s to compile), so each test compiles once and
checks several things on the result.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import (
    CELL_NAMES,
    CELLS,
    B,
    D,
    H,
    T,
    assert_tree_close,
    cell_context,
    loop,
    make_params,
    normal,
    per_example,
    random_like,
    stack_time,
)

from seqjax import truncated_unroll, unroll

LENGTHS = (4, T, 1)  # unsorted, one full-length and one single-step example


@pytest.fixture(params=CELL_NAMES)
def case(request):
    """(name, cell, random params, xs [B, T, D]) for every cell, inside the cell's promotion context."""
    cell = CELLS[request.param]
    with cell_context(request.param):
        yield request.param, cell, make_params(cell, seed=10), normal(1, (B, T, D))


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_unroll_matches_loop(case, factor):
    """Outputs, final carry and return_carries vs a Python loop over step_input, for scan unroll 1, 2 and 3.

    unroll=1: zero initial carry, batch-major. unroll=2: a given initial carry, time-major layout.
    unroll=3: a given initial carry, reverse=True vs the loop over time-reversed inputs, flipped back.
    """
    _, cell, params, xs = case
    carry0 = None if factor == 1 else random_like(cell.init_carry(params, (B,)), seed=20, scale=0.5)
    time_major, reverse = factor == 2, factor == 3

    @jax.jit
    def run(params, xs, carry0):
        inputs = jnp.swapaxes(xs, 0, 1) if time_major else xs
        kwargs = {"initial_carry": carry0, "time_major": time_major, "reverse": reverse}
        return unroll(cell, params, inputs, unroll=factor, return_carries=True, **kwargs)

    result = run(params, xs, carry0)
    carry, outputs, carries = loop(cell, params, xs[:, ::-1] if reverse else xs, carry=carry0)
    carries = stack_time(carries)
    if reverse:  # outputs and carries stay at the position of the input they read
        outputs = outputs[:, ::-1]
        carries = jax.tree.map(lambda c: c[:, ::-1], carries)
    if time_major:
        assert result.outputs.shape == (T, B, H)
        outputs = jnp.swapaxes(outputs, 0, 1)
        carries = jax.tree.map(lambda c: jnp.swapaxes(c, 0, 1), carries)
    assert result.outputs.shape == outputs.shape
    assert_tree_close(result.outputs, outputs)
    assert_tree_close(result.carry, carry)
    assert_tree_close(result.carries, carries)


@pytest.mark.parametrize("name", ["lstm_peephole", "indrnn"])
def test_remat_matches_plain(name):
    """remat=True vs remat=False: loss value and jax.grad w.r.t. params and xs."""
    cell, params, xs = CELLS[name], make_params(CELLS[name], seed=30), normal(2, (B, T, D))
    weights = normal(3, (B, T, H))

    def loss(params, xs, remat):
        result = unroll(cell, params, xs, remat=remat)
        return jnp.sum(result.outputs * weights) + sum(jnp.sum(jnp.sin(c)) for c in jax.tree.leaves(result.carry))

    @jax.jit
    def both(params, xs):
        grad = jax.value_and_grad(loss, argnums=(0, 1))
        return grad(params, xs, False), grad(params, xs, True)

    with cell_context(name):
        (value, grads), (value_remat, grads_remat) = both(params, xs)
    np.testing.assert_allclose(value_remat, value, rtol=1e-6)
    assert_tree_close(grads_remat, grads)


def test_lengths_match_each_example_alone(case):
    """Right-padded batch, both directions, vs each example run alone on its (reversed) valid prefix.

    Valid outputs equal, padded outputs exactly zero, final carry = the carry after the example's last
    read step (position L-1 forward, position 0 in reverse).
    """
    _, cell, params, xs = case

    @jax.jit
    def run(params, xs):
        lengths = jnp.array(LENGTHS)
        return unroll(cell, params, xs, lengths=lengths), unroll(cell, params, xs, lengths=lengths, reverse=True)

    for result, reverse in zip(run(params, xs), (False, True), strict=True):
        ref_carry, ref_outputs = per_example(cell, params, xs, LENGTHS, reverse=reverse)
        assert result.carries is None
        assert_tree_close(result.outputs, ref_outputs)
        assert_tree_close(result.carry, ref_carry)
        for i, length in enumerate(LENGTHS):
            np.testing.assert_array_equal(result.outputs[i, length:], 0.0)


@pytest.mark.parametrize("name", ["lstm_peephole", "indrnn"])
def test_lengths_padding_gets_no_gradient(name):
    """d loss / d xs is exactly zero at padded positions (loss on all outputs and the final carry), both directions."""
    cell, params, xs = CELLS[name], make_params(CELLS[name], seed=50), normal(7, (B, T, D))
    weights = normal(4, (B, T, H))

    def loss(xs, reverse):
        result = unroll(cell, params, xs, lengths=jnp.array(LENGTHS), reverse=reverse)
        return jnp.sum(result.outputs * weights) + sum(jnp.sum(c) for c in jax.tree.leaves(result.carry))

    with cell_context(name):
        grads = jax.jit(lambda xs: (jax.grad(loss)(xs, False), jax.grad(loss)(xs, True)))(xs)
    for grad in grads:
        for i, length in enumerate(LENGTHS):
            np.testing.assert_array_equal(grad[i, length:], 0.0)
            assert np.any(np.asarray(grad[i, :length]) != 0.0)


def test_bad_rank_raises():
    """xs of rank 2 or 4: ValueError naming the expected layout and the shape received."""
    cell = CELLS["rnn"]
    params = make_params(cell)
    with pytest.raises(ValueError, match=r"rank 3 \(\[batch, time, features\]\).*\(7, 3\)"):
        unroll(cell, params, jnp.zeros((T, D)))
    with pytest.raises(ValueError, match="rank 3"):
        unroll(cell, params, jnp.zeros((1, B, T, D)))


# --- truncated BPTT -----------------------------------------------------------------------------------------------

TT = 8  # chunk lengths: 4 divides it, 3 leaves a remainder of 2, 1, 8 = TT and 11 > TT
TRUNC_LENGTHS = (5, TT, 2)


@pytest.fixture(scope="module")
def lstm_case():
    """An LSTM with peepholes (a tuple carry), its params, xs [B, TT, D] and the full-BPTT loop gradient."""
    cell = CELLS["lstm_peephole"]
    params, xs, v = make_params(cell, seed=40), normal(5, (B, TT, D)), normal(6, (B, H))
    full_grad = jax.grad(lambda xs: jnp.sum(loop(cell, params, xs)[1][:, -1] * v))(xs)
    return cell, params, xs, v, full_grad


@pytest.mark.parametrize(
    ("chunk_len", "lengths"), [(4, None), (3, TRUNC_LENGTHS), (1, None), (TT, TRUNC_LENGTHS), (11, None)]
)
def test_truncated_forward_equals_full(lstm_case, chunk_len, lengths):
    """Forward outputs and carry vs the full loop (or, with lengths, each example alone on its prefix)."""
    cell, params, xs, _, _ = lstm_case
    lengths_arg = None if lengths is None else jnp.array(lengths)
    result = jax.jit(lambda p, x: truncated_unroll(cell, p, x, chunk_len, lengths=lengths_arg))(params, xs)
    if lengths is None:
        carry, outputs, _ = loop(cell, params, xs)
    else:
        carry, outputs = per_example(cell, params, xs, lengths)
    assert result.carries is None
    assert_tree_close(result.outputs, outputs)
    assert_tree_close(result.carry, carry)


@pytest.mark.parametrize(("chunk_len", "last_start"), [(4, 4), (3, 6), (11, 0)])
def test_truncated_gradient_is_cut(lstm_case, chunk_len, last_start):
    """Loss on the last output: d/dxs is exactly 0 before the last chunk, the full-BPTT loop gradient inside it."""
    cell, params, xs, v, full = lstm_case
    grad = jax.jit(jax.grad(lambda xs: jnp.sum(truncated_unroll(cell, params, xs, chunk_len).outputs[:, -1] * v)))(xs)
    np.testing.assert_array_equal(grad[:, :last_start], 0.0)
    np.testing.assert_allclose(grad[:, last_start:], full[:, last_start:], rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(full[:, :last_start]) != 0.0)  # the cut is real: full BPTT reaches further back


@pytest.mark.parametrize("chunk_len", [0, -2])
def test_truncated_bad_chunk_len(lstm_case, chunk_len):
    """chunk_len < 1 -> ValueError."""
    cell, params, xs, _, _ = lstm_case
    with pytest.raises(ValueError, match="chunk_len must be >= 1"):
        truncated_unroll(cell, params, xs, chunk_len)


def test_projection_inside_the_step_matches_loop(case):
    """hoist=False (the input projection inside each step) vs the loop: outputs, carry and param gradients."""
    _, cell, params, xs = case
    lengths = jnp.array(LENGTHS)

    def loss(params, hoist):
        result = unroll(cell, params, xs, lengths=lengths, hoist=hoist)
        return jnp.sum(jnp.square(result.outputs)) + jnp.sum(jnp.square(jax.tree.leaves(result.carry)[0]))

    def loss_loop(params):
        carry, outputs = per_example(cell, params, xs, LENGTHS)
        return jnp.sum(jnp.square(outputs)) + jnp.sum(jnp.square(jax.tree.leaves(carry)[0]))

    value, grads = jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, False)
    expected_value, expected_grads = jax.value_and_grad(loss_loop)(params)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    assert_tree_close(grads, expected_grads, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("batch", "hidden", "platform", "expected"),
    [
        (8, 512, "cpu", True),
        (16, 128, "cpu", True),
        (16, 256, "cpu", False),
        (32, 128, "cpu", False),
        (64, 512, "cpu", False),
        (64, 512, "gpu", True),
        (256, 1024, "tpu", True),
    ],
)
def test_hoist_by_default(batch, hidden, platform, expected):
    """The measured rule: hoist on accelerators; on CPU only for small batches (see its docstring)."""
    from seqjax.scan import hoist_by_default

    assert hoist_by_default(batch, hidden, platform) is expected


@pytest.mark.parametrize("name", ["lstm", "gru_cho"])
def test_segments_equal_one_pass(name):
    """segment_len only changes what the backward pass stores: values and gradients are unchanged,
    for a segment length that does not divide T, with lengths, in reverse, fused or scanned."""
    cell = CELLS[name]
    params, xs, weights = make_params(cell, seed=4), normal(1, (B, T, D)), normal(2, (B, T, H))

    def loss(params, xs, **options):
        result = unroll(cell, params, xs, lengths=jnp.array(LENGTHS), reverse=True, **options)
        return jnp.sum(result.outputs * weights) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(result.carry))

    plain = jax.value_and_grad(loss, argnums=(0, 1))(params, xs, fused=False)
    for fused in (False, True) if cell.fused else (False,):
        segmented = jax.value_and_grad(loss, argnums=(0, 1))(params, xs, segment_len=3, fused=fused)
        assert_tree_close(segmented, plain, rtol=2e-5, atol=2e-6)


def test_segments_store_less():
    """The checkpointed segments are really taken: XLA's temporary buffers of the training step shrink."""
    cell = CELLS["lstm"]
    params, xs = make_params(cell), jnp.zeros((4, 512, D))

    def temp_bytes(segment_len):
        step = jax.jit(jax.grad(lambda p, x: jnp.sum(unroll(cell, p, x, segment_len=segment_len).carry.hidden)))
        return step.lower(params, xs).compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(23) < temp_bytes(None) / 4


def test_segments_reject_per_step_state():
    cell = CELLS["rnn"]
    with pytest.raises(ValueError, match="segment_len must be >= 1"):
        unroll(cell, make_params(cell), normal(1, (B, T, D)), segment_len=0)
    with pytest.raises(ValueError, match="cannot be combined with probe or return_carries"):
        unroll(cell, make_params(cell), normal(1, (B, T, D)), segment_len=2, return_carries=True)
