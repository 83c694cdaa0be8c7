"""The LSTM's native time loops (``seqjax/native/lstm_sequence.cc``, ``seqjax.cells.lstm_native``) against the
pure-JAX fused sequence they replace (itself checked against PyTorch's LSTM in test_torch_interop): values and
gradients; thread-count independence; the rule that picks the path; the refusals and the fallback without a
compiler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seqjax
from seqjax.cells import lstm_native
from seqjax.native import build
from seqjax.scan import fused_by_default


@pytest.fixture(scope="module")
def native():
    try:
        lstm_native.load()
    except lstm_native.NativeUnavailable as e:
        pytest.skip(f"the native LSTM loops cannot be built here: {e}")


def _inputs(batch, steps, features, hidden, seed=0):
    rng = np.random.default_rng(seed)
    params = seqjax.lstm().init_params(jax.random.key(seed), features, hidden)
    params = {**params, "b": params["b"] + jnp.asarray(rng.normal(0, 0.5, params["b"].shape), jnp.float32)}
    xs = jnp.asarray(rng.normal(size=(batch, steps, features)), jnp.float32)
    carry = seqjax.LSTMCarry(*(jnp.asarray(rng.normal(0, 0.5, (batch, hidden)), jnp.float32) for _ in range(2)))
    weights = [jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((batch, steps, hidden), (batch, hidden))]
    return params, xs, carry, weights


def _loss(cell, weights):
    """A loss that reads every output and both final carries, so every cotangent path is exercised."""

    def loss(params, xs, carry):
        out = seqjax.unroll(cell, params, xs, initial_carry=carry, fused=True)
        return (
            jnp.sum(weights[0] * out.outputs)
            + jnp.sum(weights[1] * out.carry.cell)
            + 0.5 * jnp.sum(out.carry.hidden**2)
        )

    return loss


# Hidden sizes: whole vector blocks (8 or 16 lanes), a partial last block, fewer units than one block.
@pytest.mark.parametrize(
    "batch, steps, features, hidden",
    [(1, 1, 3, 16), (5, 7, 12, 32), (7, 3, 5, 48), (13, 9, 16, 64), (4, 5, 6, 37), (3, 4, 2, 5)],
)
def test_native_loops_give_the_pure_jax_values_and_gradients(native, batch, steps, features, hidden):
    params, xs, carry, weights = _inputs(batch, steps, features, hidden)
    native, plain = (_loss(seqjax.lstm(kernel=k), weights) for k in ("native", "jax"))
    got = jax.value_and_grad(native, argnums=(0, 1, 2))(params, xs, carry)
    want = jax.value_and_grad(plain, argnums=(0, 1, 2))(params, xs, carry)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5 * float(jnp.max(jnp.abs(w))))
    out = seqjax.unroll(seqjax.lstm(kernel="native"), params, xs, initial_carry=carry, fused=True)
    ref = seqjax.unroll(seqjax.lstm(kernel="jax"), params, xs, initial_carry=carry, fused=True)
    for g, w in zip(jax.tree.leaves(out), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_results_do_not_depend_on_the_number_of_threads(native, monkeypatch):
    params, xs, carry, weights = _inputs(6, 5, 8, 83)
    loss = _loss(seqjax.lstm(kernel="native"), weights)
    results = []
    for threads in (1, 2, 3, 8):
        monkeypatch.setattr(lstm_native, "threads", lambda n=threads: n)
        results.append(jax.value_and_grad(loss, argnums=(0, 1, 2))(params, xs, carry))
    for other in results[1:]:
        for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(other), strict=True):
            np.testing.assert_array_equal(a, b)


def test_vmap_runs_the_native_loops_member_by_member(native):
    hidden = 32
    members = [_inputs(3, 4, 5, hidden, seed) for seed in (1, 2)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *[(p, x, c) for p, x, c, _ in members])
    cell = seqjax.lstm(kernel="native")

    def run(p, x, c):
        return seqjax.unroll(cell, p, x, initial_carry=c, fused=True).outputs

    batched = jax.vmap(run)(*stacked)
    for m, (p, x, c, _) in enumerate(members):
        np.testing.assert_array_equal(batched[m], run(p, x, c))


def _takes_native(cell, params, xs, **options) -> bool:
    jaxpr = jax.make_jaxpr(lambda p, x: seqjax.unroll(cell, p, x, **options).outputs)(params, xs)
    return lstm_native.FORWARD_TARGET in str(jaxpr)


def test_the_rule_takes_the_native_loops_exactly_where_they_apply(native):
    params, xs, _, _ = _inputs(4, 6, 5, 20)
    auto = seqjax.lstm()
    assert _takes_native(auto, params, xs, fused=True)
    assert _takes_native(auto, params, xs)  # B=4: the default path is the fused sequence
    assert not _takes_native(seqjax.lstm(kernel="jax"), params, xs, fused=True)
    assert not _takes_native(auto, params, xs, fused=False)
    assert not _takes_native(auto, params, xs, fused=True, lengths=jnp.array([6, 5, 4, 3]))
    assert not _takes_native(auto, params, xs, fused=True, remat=True)
    half = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    assert not _takes_native(auto, half, xs.astype(jnp.bfloat16), fused=True)
    assert not _takes_native(auto, params, xs[:, :0], fused=True)
    wide, wide_xs, _, _ = _inputs(64, 3, 5, 64)
    assert not fused_by_default(64, 64, "cpu")  # the shape rule alone would scan here; the native loops are faster
    assert _takes_native(auto, wide, wide_xs) and not _takes_native(seqjax.lstm(kernel="jax"), wide, wide_xs)


def test_kernel_native_refuses_in_one_line_where_the_loops_do_not_apply(native):
    params, xs, _, _ = _inputs(4, 6, 5, 16)
    with pytest.raises(
        ValueError, match=r"^lstm\(kernel='native'\): the native LSTM loops do not apply: it has no pad"
    ):
        seqjax.unroll(seqjax.lstm(kernel="native"), params, xs, fused=True, lengths=jnp.array([6, 5, 4, 3]))
    with pytest.raises(ValueError, match=r"^lstm\(kernel='fast'\): expected one of auto, native, jax$"):
        seqjax.lstm(kernel="fast")


def test_without_a_compiler_auto_falls_back_and_says_so_once(monkeypatch, capsys):
    def unavailable():
        raise lstm_native.NativeUnavailable("no C++ compiler found (install g++ or clang++, or set CXX)")

    monkeypatch.setattr(lstm_native, "load", unavailable)
    lstm_native._notice.cache_clear()
    params, xs, _, _ = _inputs(3, 4, 5, 32)
    for _ in range(2):
        out = seqjax.unroll(seqjax.lstm(), params, xs, fused=True).outputs
    np.testing.assert_array_equal(out, seqjax.unroll(seqjax.lstm(kernel="jax"), params, xs, fused=True).outputs)
    assert capsys.readouterr().err.splitlines() == [
        "seqjax: the LSTM's fused sequence uses its pure-JAX loops (slower): no C++ compiler found (install g++ or "
        "clang++, or set CXX)"
    ]
    with pytest.raises(ValueError, match=r"^lstm\(kernel='native'\): the native LSTM loops cannot be built: no C"):
        seqjax.unroll(seqjax.lstm(kernel="native"), params, xs, fused=True)
    lstm_native._notice.cache_clear()


def test_a_build_that_fails_is_tried_once_and_the_reason_given_again(monkeypatch, tmp_path):
    """The LSTM asks for its kernel on every trace: a compiler error must not mean a compile per trace."""
    attempts = tmp_path / "attempts"
    compiler = tmp_path / "c++"
    compiler.write_text(f"#!/bin/sh\necho attempt >> {attempts}\necho 'error: refused' >&2\nexit 1\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", str(compiler))
    monkeypatch.setenv("SEQJAX_NATIVE_CACHE", str(tmp_path / "cache"))
    build._outcome.cache_clear()
    try:
        for _ in range(3):
            with pytest.raises(
                build.NativeUnavailable, match=r"^c\+\+ could not compile lstm_sequence.cc: error: refused$"
            ):
                build.library("lstm_sequence")
    finally:
        build._outcome.cache_clear()  # later tests load the real kernel again
    assert attempts.read_text().splitlines() == ["attempt"]
