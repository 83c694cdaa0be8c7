"""Cells against independent references: Flax's linen cells with copied weights, and NumPy float64 equations."""

import pathlib
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import initializers
from seqjax.cells import (
    BUILTIN_CELLS,
    Cell,
    LSTMCarry,
    cell_by_name,
    gru,
    hidden_size_of,
    lstm,
    rnn,
    step_input,
)

D, H, B, T = 3, 4, 2, 5
EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def randomize(params, key, scale=0.6):
    """Every leaf (weights, biases, peepholes) replaced by scale * N(0, 1), so every term matters."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    new = [scale * jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves, strict=True)]
    return jax.tree.unflatten(treedef, new)


def inputs(key, batch=(B,), steps=T):
    return jax.random.normal(key, (steps, *batch, D), jnp.float32)


def run_seqjax(cell, params, xs):
    """Python loop of ``step_input`` from the zero carry; returns per-step carries and outputs."""
    carry = cell.init_carry(params, xs.shape[1:-1])
    carries, ys = [], []
    for x in xs:
        carry, y = step_input(cell, params, carry, x)
        carries.append(carry)
        ys.append(y)
    return carries, ys


def run_flax(module, flax_params, carry, xs):
    carries, ys = [], []
    for x in xs:
        carry, y = module.apply({"params": flax_params}, carry, x)
        carries.append(carry)
        ys.append(y)
    return carries, ys


def blocks(a, n):
    """``[..., n*h]`` -> n arrays ``[..., h]``."""
    return np.split(np.asarray(a), n, axis=-1)


def assert_flax_tree(module, flax_params, x, carry):
    """The hand-built Flax params have exactly the tree (names and shapes) of Flax's own init."""
    own = module.init(jax.random.key(1), carry, x)["params"]
    shapes = lambda t: jax.tree.map(lambda a: np.shape(a), t)
    assert shapes(own) == shapes(flax_params)


def assert_close_seq(actual, expected, atol=1e-5):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), atol=atol, rtol=0)


# ---------------------------------------------------------------- Flax references


def rnn_to_flax(p):
    return {"i": {"kernel": p["w_ih"], "bias": p["b"]}, "h": {"kernel": p["w_hh"]}}


def lstm_to_flax(p):
    wi, wh, b = blocks(p["w_ih"], 4), blocks(p["w_hh"], 4), blocks(p["b"], 4)
    out = {}
    for k, gate in enumerate("ifgo"):
        out[f"i{gate}"] = {"kernel": wi[k]}
        out[f"h{gate}"] = {"kernel": wh[k], "bias": b[k]}
    return out


def gru_to_flax(p):
    wi, wh, b = blocks(p["w_ih"], 3), blocks(p["w_hh"], 3), blocks(p["b"], 3)
    out = {f"i{gate}": {"kernel": wi[k], "bias": b[k]} for k, gate in enumerate("rzn")}
    out["hr"] = {"kernel": wh[0]}
    out["hz"] = {"kernel": wh[1]}
    out["hn"] = {"kernel": wh[2], "bias": np.asarray(p["b_hn"])}
    return out


def same_as_flax(cell, params, module, flax_params, xs):
    """The seqjax cell and the Flax module, from a zero carry: the same parameter tree, carries and outputs."""
    carry0 = jnp.zeros((B, H), jnp.float32)
    assert_flax_tree(module, flax_params, xs[0], carry0)
    carries, ys = run_seqjax(cell, params, xs)
    f_carries, f_ys = run_flax(module, flax_params, carry0, xs)
    assert_close_seq(carries, f_carries)
    assert_close_seq(ys, f_ys)
    return ys


@pytest.mark.parametrize(("activation", "flax_fn"), [("tanh", jnp.tanh), ("relu", jax.nn.relu)])
def test_rnn_matches_flax_simple_cell(key, activation, flax_fn):
    """Reference: flax.linen.SimpleCell (bias on the input Dense 'i') with the same weights, T steps."""
    k_p, k_r, k_x = jax.random.split(key, 3)
    cell = rnn(activation=activation)
    params = randomize(cell.init_params(k_p, D, H), k_r)
    xs = inputs(k_x)
    module = nn.SimpleCell(features=H, activation_fn=flax_fn)
    flax_params = rnn_to_flax(params)
    ys = same_as_flax(cell, params, module, flax_params, xs)
    if activation == "relu":  # the relu branch is exercised: some units are off, some on
        assert (np.asarray(ys[-1]) == 0).any() and (np.asarray(ys[-1]) > 0).any()


@pytest.mark.parametrize("flax_cls", [nn.LSTMCell, nn.OptimizedLSTMCell])
def test_lstm_matches_flax(key, flax_cls):
    """Reference: flax.linen.LSTMCell / OptimizedLSTMCell (gates i, f, g, o; bias on the 'h*' Dense), T steps."""
    k_p, k_r, k_x = jax.random.split(key, 3)
    cell = lstm(forget_bias=0.0)
    params = randomize(cell.init_params(k_p, D, H), k_r)
    xs = inputs(k_x)
    module = flax_cls(features=H)
    flax_params = lstm_to_flax(params)
    zeros = jnp.zeros((B, H), jnp.float32)
    assert_flax_tree(module, flax_params, xs[0], (zeros, zeros))

    carries, ys = run_seqjax(cell, params, xs)
    f_carries, f_ys = run_flax(module, flax_params, (zeros, zeros), xs)
    assert all(isinstance(c, LSTMCarry) for c in carries)
    assert_close_seq([c.hidden for c in carries], [h for _, h in f_carries])  # Flax carry is (c, h)
    assert_close_seq([c.cell for c in carries], [c for c, _ in f_carries])
    assert_close_seq(ys, f_ys)


def test_lstm_forget_bias_matches_flax_forget_bias(key):
    """lstm(forget_bias=b) as initialised == Flax LSTMCell whose forget bias ('hf') is b and other biases 0."""
    fb = 1.5
    k_p, k_r, k_x = jax.random.split(key, 3)
    cell = lstm(forget_bias=fb)
    params = cell.init_params(k_p, D, H)
    b = np.asarray(params["b"])
    np.testing.assert_array_equal(b[H : 2 * H], np.full(H, fb, np.float32))
    np.testing.assert_array_equal(np.delete(b, np.s_[H : 2 * H]), np.zeros(3 * H, np.float32))

    # random weights, the bias exactly as initialised
    params = {**randomize(params, k_r), "b": params["b"]}
    flax_params = lstm_to_flax({**params, "b": jnp.zeros(4 * H, jnp.float32)})
    flax_params["hf"]["bias"] = np.full(H, fb, np.float32)
    xs = inputs(k_x)
    zeros = jnp.zeros((B, H), jnp.float32)
    carries, ys = run_seqjax(cell, params, xs)
    f_carries, f_ys = run_flax(nn.LSTMCell(features=H), flax_params, (zeros, zeros), xs)
    assert_close_seq([c.cell for c in carries], [c for c, _ in f_carries])
    assert_close_seq(ys, f_ys)


def test_gru_reset_after_matches_flax(key):
    """Reference: flax.linen.GRUCell (gates r, z, n; input biases on 'i*', b_hn on 'hn'), T steps."""
    k_p, k_r, k_x = jax.random.split(key, 3)
    cell = gru(reset_after=True)
    params = randomize(cell.init_params(k_p, D, H), k_r)
    xs = inputs(k_x)
    module = nn.GRUCell(features=H)
    flax_params = gru_to_flax(params)
    same_as_flax(cell, params, module, flax_params, xs)


# ---------------------------------------------------------------- NumPy float64 references


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def f64(params):
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def gru_cho_numpy(p, xs):
    """Cho et al. 2014: n = tanh(x W_n + b_n + (r * h) U_n)."""
    w_r, w_z, w_n = blocks(p["w_ih"], 3)
    u_r, u_z, u_n = blocks(p["w_hh"], 3)
    b_r, b_z, b_n = blocks(p["b"], 3)
    h = np.zeros((*xs.shape[1:-1], u_r.shape[0]))
    hs = []
    for x in np.asarray(xs, np.float64):
        r = sigmoid(x @ w_r + b_r + h @ u_r)
        z = sigmoid(x @ w_z + b_z + h @ u_z)
        n = np.tanh(x @ w_n + b_n + (r * h) @ u_n)
        h = (1 - z) * n + z * h
        hs.append(h)
    return hs


def lstm_peephole_numpy(p, xs):
    """Gers & Schmidhuber 2000: i, f peek at c_{t-1}; o peeks at c_t."""
    w = blocks(p["w_ih"], 4)
    u = blocks(p["w_hh"], 4)
    b = blocks(p["b"], 4)
    p_i, p_f, p_o = p["peephole"]
    h = c = np.zeros((*xs.shape[1:-1], u[0].shape[0]))
    hs, cs = [], []
    for x in np.asarray(xs, np.float64):
        z_i, z_f, z_g, z_o = (x @ w[k] + b[k] + h @ u[k] for k in range(4))
        i = sigmoid(z_i + p_i * c)
        f = sigmoid(z_f + p_f * c)
        c = f * c + i * np.tanh(z_g)
        o = sigmoid(z_o + p_o * c)
        h = o * np.tanh(c)
        hs.append(h)
        cs.append(c)
    return hs, cs


def test_gru_cho_matches_numpy(key):
    """Reference: the Cho et al. (reset before the recurrent matmul) equations in NumPy float64."""
    k_p, k_r, k_x = jax.random.split(key, 3)
    cell = gru(reset_after=False)
    params = randomize(cell.init_params(k_p, D, H), k_r)
    assert "b_hn" not in params
    xs = inputs(k_x)
    carries, ys = run_seqjax(cell, params, xs)
    expected = gru_cho_numpy(f64(params), xs)
    assert_close_seq(carries, expected)
    assert_close_seq(ys, expected)
    # the reset placement matters: reset-after on the same weights (b_hn = 0) gives different values
    _, ys_after = run_seqjax(gru(reset_after=True), {**params, "b_hn": jnp.zeros(H, jnp.float32)}, xs)
    assert np.abs(np.asarray(ys_after[-1]) - expected[-1]).max() > 1e-3


def test_lstm_peephole_matches_numpy(key):
    """Reference: peephole LSTM equations in NumPy float64, with nonzero p_i, p_f, p_o."""
    k_p, k_r, k_x = jax.random.split(key, 3)
    cell = lstm(peephole=True)
    params = cell.init_params(k_p, D, H)
    assert params["peephole"].shape == (3, H)
    np.testing.assert_array_equal(np.asarray(params["peephole"]), np.zeros((3, H), np.float32))
    params = randomize(params, k_r, scale=0.8)
    xs = inputs(k_x)
    carries, ys = run_seqjax(cell, params, xs)
    hs, cs = lstm_peephole_numpy(f64(params), xs)
    assert_close_seq([c.hidden for c in carries], hs)
    assert_close_seq([c.cell for c in carries], cs)
    assert_close_seq(ys, hs)
    # each peephole is used: zeroing one row changes the result
    for row in range(3):
        p = f64(params)
        p["peephole"][row] = 0.0
        h_zeroed, _ = lstm_peephole_numpy(p, xs)
        assert np.abs(h_zeroed[-1] - hs[-1]).max() > 1e-4


# ---------------------------------------------------------------- the Cell protocol


def builtin_factories():
    """Each built-in name and the factory call it stands for (default recurrent init, forget bias 1)."""
    return {
        "rnn": rnn("tanh"),
        "rnn_relu": rnn("relu"),
        "lstm": lstm(forget_bias=1.0),
        "lstm_peephole": lstm(forget_bias=1.0, peephole=True),
        "gru": gru(reset_after=True),
        "gru_cho": gru(reset_after=False),
    }


@pytest.fixture
def my_cells(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import my_cells

    return my_cells


@pytest.mark.parametrize("name", BUILTIN_CELLS)
def test_init_carry_is_zeros(key, name):
    """init_carry: zeros [*batch, h] (an LSTMCarry of two for LSTMs), for any batch shape, in float32 for float32
    and bfloat16 params alike (mixed precision keeps the state in float32: tests/test_precision.py)."""
    cell = builtin_factories()[name]
    for dtype in (jnp.float32, jnp.bfloat16):
        # identity init: QR (orthogonal) has no bfloat16 kernel on CPU
        cell_ = cell_by_name(name, recurrent_init=initializers.identity) if dtype == jnp.bfloat16 else cell
        params = cell_.init_params(key, D, H, dtype)
        for batch in ((), (B,), (B, 3)):
            carry = cell_.init_carry(params, batch)
            leaves = [carry.hidden, carry.cell] if name.startswith("lstm") else [carry]
            assert isinstance(carry, LSTMCarry) == name.startswith("lstm")
            for leaf in leaves:
                assert leaf.shape == (*batch, H) and leaf.dtype == jnp.float32
                np.testing.assert_array_equal(np.asarray(leaf, np.float32), np.zeros((*batch, H), np.float32))


@pytest.mark.parametrize(("d", "h"), [(3, 5), (4, 4), (6, 3)])
def test_user_cell_gets_inferred_zero_carry(key, my_cells, d, h):
    """A Cell(init_params, step) with a single-array carry gets zeros [*batch, h]; h recovered from param shapes."""
    cell = my_cells.indrnn
    params = cell.init_params(key, d, h)
    assert hidden_size_of(cell.init_params, params) == h
    carry = cell.init_carry(params, (B, 3))
    assert carry.shape == (B, 3, h) and carry.dtype == jnp.float32
    assert not np.asarray(carry).any()


def test_user_cell_through_step_input(key, my_cells):
    """A cell without project runs through step_input on the raw input; reference: IndRNN in NumPy float64."""
    k_p, k_r, k_x = jax.random.split(key, 3)
    cell = my_cells.indrnn
    assert cell.project is None
    params = randomize(cell.init_params(k_p, D, H), k_r)
    xs = inputs(k_x, batch=())  # unbatched: indrnn's `u * h` broadcasts [h] against [*b, h] implicitly
    carries, ys = run_seqjax(cell, params, xs)
    p = f64(params)
    h = np.zeros(H)
    expected = []
    for x in np.asarray(xs, np.float64):
        h = np.maximum(x @ p["w"] + p["u"] * h + p["b"], 0.0)
        expected.append(h)
    assert_close_seq(carries, expected)
    assert_close_seq(ys, expected)


def test_hidden_size_from_fused_block(key):
    """h appears only as a fraction of a fused [d, 2h] weight: still inferred (zero carry [*batch, h])."""

    def init_params(key, input_size, hidden_size, dtype=jnp.float32):
        return {"w": jax.random.normal(key, (input_size, 2 * hidden_size), dtype)}

    def step(params, h, x):
        a, g = jnp.split(x @ params["w"], 2, axis=-1)
        h = jax.nn.sigmoid(g) * h + jnp.tanh(a)
        return h, h

    cell = Cell(init_params, step)
    params = init_params(key, 3, 4)
    assert hidden_size_of(init_params, params) == 4
    carry = cell.init_carry(params, (B,))
    assert carry.shape == (B, 4) and not np.asarray(carry).any()


def test_initial_biases_are_zero(key):
    """Per the docstrings: rnn b, gru b and b_hn start at zero (lstm: see the forget-bias test)."""
    for cell in (rnn(), gru(reset_after=True), gru(reset_after=False)):
        params = cell.init_params(key, D, H)
        for name in ("b", "b_hn"):
            if name in params:
                np.testing.assert_array_equal(np.asarray(params[name]), np.zeros(params[name].shape, np.float32))


def test_hidden_size_ambiguous_raises(key):
    """Params w [d*h] fit (2, 3), (3, 2), ... : no dimension grows with the hidden size alone."""

    def init_params(key, input_size, hidden_size, dtype=jnp.float32):
        return {"w": jnp.zeros((input_size * hidden_size,), dtype)}

    cell = Cell(init_params, lambda params, h, x: (h, h))
    params = init_params(key, 2, 3)
    with pytest.raises(ValueError, match=r"cannot infer the hidden size.*explicit init_carry"):
        hidden_size_of(init_params, params)
    with pytest.raises(ValueError, match=r"cannot infer the hidden size"):
        cell.init_carry(params, (B,))


def test_hidden_size_unmatched_raises(key):
    """Params w [d, h * h + 1]: no hidden size makes w [2, 5]."""

    def init_params(key, input_size, hidden_size, dtype=jnp.float32):
        return {"w": jnp.zeros((input_size, hidden_size * hidden_size + 1), dtype)}

    cell = Cell(init_params, lambda params, h, x: (h, h))
    with pytest.raises(ValueError, match=re.escape("(init_params: its shapes fit no single hidden size)")):
        cell.init_carry(init_params(key, 2, 2), (B,))


def test_cell_by_name_matches_factories(key):
    """Each built-in name: same params as its factory (same key) and the same steps on random params."""
    factories = builtin_factories()
    assert set(factories) == set(BUILTIN_CELLS)
    k_p, k_r, k_x = jax.random.split(key, 3)
    xs = inputs(k_x, steps=2)
    outputs = {}
    for name, factory in factories.items():
        cell = cell_by_name(name)
        p_named, p_factory = cell.init_params(k_p, D, H), factory.init_params(k_p, D, H)
        assert jax.tree.map(np.shape, p_named) == jax.tree.map(np.shape, p_factory), name
        for a, b in zip(jax.tree.leaves(p_named), jax.tree.leaves(p_factory), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        params = randomize(p_factory, k_r)
        _, ys = run_seqjax(cell, params, xs)
        _, ys_ref = run_seqjax(factory, params, xs)
        assert_close_seq(ys, ys_ref, atol=0)
        outputs[name] = ys[-1]
    # the names are not interchangeable: relu vs tanh differ on the same params
    assert np.abs(np.asarray(outputs["rnn"]) - np.asarray(outputs["rnn_relu"])).max() > 1e-3


def test_cell_by_name_passes_options(key):
    """recurrent_init and forget_bias reach the built-in cells (reference: I blocks, b_f = 2)."""
    eye = np.eye(H, dtype=np.float32)
    for name in BUILTIN_CELLS:
        params = cell_by_name(name, recurrent_init=initializers.identity, forget_bias=2.0).init_params(key, D, H)
        w_hh = np.asarray(params["w_hh"])
        np.testing.assert_array_equal(w_hh, np.tile(eye, (1, w_hh.shape[1] // H)))
        if name.startswith("lstm"):
            np.testing.assert_array_equal(np.asarray(params["b"])[H : 2 * H], np.full(H, 2.0, np.float32))


def test_cell_by_name_unknown_lists_known():
    with pytest.raises(ValueError, match="unknown cell 'lstmm'") as info:
        cell_by_name("lstmm")
    for name in BUILTIN_CELLS:
        assert name in str(info.value)


def test_cell_by_name_imports_user_cell(my_cells, monkeypatch):
    """'my_cells:indrnn' is the Cell object defined in examples/my_cells.py, found as a module on sys.path or by its
    file (once: the same object every time); a factory function is called."""
    assert cell_by_name("my_cells:indrnn") is my_cells.indrnn
    by_file = cell_by_name(f"{EXAMPLES / 'my_cells.py'}:indrnn")
    assert by_file.name == "indrnn" and by_file is cell_by_name(f"{EXAMPLES / 'my_cells.py'}:indrnn")
    monkeypatch.chdir(EXAMPLES.parent)
    assert cell_by_name("examples/my_cells.py:indrnn") is by_file  # relative to the working directory
    assert cell_by_name("seqjax.cells:gru").name == "gru"  # a function of no arguments returning a Cell


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz:cell", "cannot import cell"),
        ("my_cells:no_such_attr", "cannot import cell"),
        (":indrnn", "cannot import cell"),
        ("math:pi", "is not a seqjax.cells.Cell"),
        ("my_cells:indrnn_init", "function of no arguments"),  # callable, but needs arguments
        ("no/such/file.py:cell", "cannot import cell 'no/such/file.py:cell': no such file"),
    ],
)
def test_cell_by_name_bad_spec(my_cells, spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cell_by_name(spec)


def test_rnn_unknown_activation():
    with pytest.raises(ValueError, match=r"unknown RNN activation 'bogus'.*tanh.*relu.*identity"):
        rnn(activation="bogus")
