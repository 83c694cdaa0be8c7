"""PyTorch state dicts in and out (``seqjax.interop.pytorch``) against PyTorch's own numbers.

The fixtures (tests/fixtures/torch_*.npz, written by tests/fixtures/make_torch_fixtures.py) hold float64 runs of
``nn.RNN`` (tanh, relu), ``nn.LSTM`` (with and without ``proj_size``) and ``nn.GRU``, multi-layer and bidirectional:
outputs, final states and gradients must agree to 1e-12 without torch installed. Where torch is installed, a live
test also loads a fresh module's state dict and loads an exported one into PyTorch.
"""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import layers
from seqjax.interop import pytorch

FIXTURES = Path(__file__).resolve().parent / "fixtures"
D, H, P, B, T = 3, 4, 2, 2, 5
TOL = 1e-12


def torch_param_grads(mode, grads):
    """dL/d(PyTorch's first-layer forward tensors) from dL/d(seqjax params), by the chain rule of ``load``:
    W = tensor^T, and b = bias_ih + bias_hh (the GRU: b_{r,z} = bias_ih + bias_hh, b_n = bias_ih, b_hn = bias_hh)."""
    g = {name: np.asarray(a) for name, a in grads.items()}
    out = {"weight_ih_l0": g["w_ih"].T, "weight_hh_l0": g["w_hh"].T, "bias_ih_l0": g["b"]}
    if mode == "GRU":
        out["bias_hh_l0"] = np.concatenate([g["b"][: 2 * H], g["b_hn"]])
    else:
        out["bias_hh_l0"] = g["b"]
    if "w_hr" in g:
        out["weight_hr_l0"] = g["w_hr"].T
    return out


def run_fixture(stack, fixture, time_major):
    """Outputs, PyTorch's final state and the gradients of the fixture's loss, through ``unroll_layers``."""
    lstm = stack.mode == "LSTM"

    def loss(layer_params, x, h0, c0):
        run = dataclasses.replace(stack, layers=layer_params)
        carries = pytorch.initial_carries(run, h0, c0)
        result = layers.unroll_layers(
            run.cell, layer_params, x, both_ways=run.both_ways, initial_carries=carries, time_major=time_major
        )
        state = pytorch.final_state(run, result.carry)
        h_n, c_n = state if lstm else (state, None)
        value = jnp.sum(result.outputs * fixture["w_out"]) + jnp.sum(h_n * fixture["w_h"])
        if lstm:
            value = value + jnp.sum(c_n * fixture["w_c"])
        return value, (result.outputs, state)

    c0 = jnp.asarray(fixture["c0"]) if lstm else None
    args = (stack.layers, jnp.asarray(fixture["x"]), jnp.asarray(fixture["h0"]), c0)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3) if lstm else (0, 1, 2), has_aux=True))(*args)


@pytest.mark.parametrize("name", ["rnn_tanh", "rnn_relu", "lstm", "lstmp", "gru"])
def test_matches_pytorch_fixture(name):
    """load(state dict) -> unroll_layers from PyTorch's (h0, c0): outputs, (h_n, c_n) and the gradients w.r.t. the
    input, the initial state and the first layer's tensors equal PyTorch's to 1e-12 in float64; and export(load(sd))
    gives back PyTorch's weights exactly and its summed biases."""
    fixture = dict(np.load(FIXTURES / f"torch_{name}.npz"))
    state_dict = {k: v for k, v in fixture.items() if k.startswith("state.")}
    with jax.enable_x64(True):
        stack = pytorch.load(fixture, str(fixture["mode"]), prefix="state.")
        assert stack.proj_size == (P if name == "lstmp" else None)
        (_, (outputs, state)), grads = run_fixture(stack, fixture, time_major=not bool(fixture["batch_first"]))
    np.testing.assert_allclose(outputs, fixture["out"], rtol=0, atol=TOL)
    h_n, c_n = state if stack.mode == "LSTM" else (state, None)
    np.testing.assert_allclose(h_n, fixture["h_n"], rtol=0, atol=TOL)
    np.testing.assert_allclose(grads[1], fixture["grad_x"], rtol=0, atol=TOL)
    np.testing.assert_allclose(grads[2], fixture["grad_h0"], rtol=0, atol=TOL)
    if c_n is not None:
        np.testing.assert_allclose(c_n, fixture["c_n"], rtol=0, atol=TOL)
        np.testing.assert_allclose(grads[3], fixture["grad_c0"], rtol=0, atol=TOL)
    first = grads[0][0][0] if stack.both_ways else grads[0][0]
    for tensor, grad in torch_param_grads(stack.mode, first).items():
        np.testing.assert_allclose(grad, fixture[f"grad.{tensor}"], rtol=0, atol=TOL, err_msg=tensor)

    exported = pytorch.export(stack)
    assert list(exported) == [k.removeprefix("state.") for k in state_dict]  # PyTorch's names, in its order
    for key, value in state_dict.items():
        tensor = key.removeprefix("state.")
        if tensor.startswith("weight"):
            np.testing.assert_array_equal(exported[tensor], value)
        elif tensor.startswith("bias_ih"):
            bias_hh = "bias_hh" + tensor.removeprefix("bias_ih")
            summed = exported[tensor] + exported[bias_hh]
            np.testing.assert_allclose(summed, value + state_dict["state." + bias_hh], rtol=0, atol=1e-15)


def random_stack(mode, proj_size, both_ways, seed, num_layers=2):
    """A Stack shaped as ``init_layers`` makes it for ``mode``, every leaf N(0, 1) (biases and b_hn nonzero)."""
    cell = pytorch.cell_for(mode, proj_size)
    keys = [jax.random.key(k) for k in range(num_layers)]  # concrete: only shapes are traced
    shapes = jax.eval_shape(lambda: layers.init_layers(cell, keys, D, H, both_ways))
    leaves, treedef = jax.tree.flatten(shapes)
    rng = np.random.default_rng(seed)
    values = [jnp.asarray(rng.standard_normal(a.shape), jnp.float32) for a in leaves]
    return pytorch.Stack(mode, jax.tree.unflatten(treedef, values), both_ways)


@pytest.mark.parametrize(
    "mode, proj_size", [("RNN_TANH", None), ("RNN_RELU", None), ("LSTM", None), ("LSTM", P), ("GRU", None)]
)
def test_export_then_load_is_exact(mode, proj_size):
    """load(export(stack)) == stack bit for bit, one-way and both ways; the summed bias goes into bias_ih, bias_hh is
    zero (the GRU's: b_hn in its third block)."""
    for both_ways in (False, True):
        stack = random_stack(mode, proj_size, both_ways, seed=3)
        exported = pytorch.export(stack)
        dirs = ("", "_reverse") if both_ways else ("",)
        names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] + (["weight_hr"] if proj_size else [])
        assert list(exported) == [f"{n}_l{k}{s}" for k in range(2) for s in dirs for n in names]
        assert all(a.flags.writeable and a.flags.c_contiguous for a in exported.values())  # torch.from_numpy
        back = pytorch.load(exported, mode)
        assert back.both_ways == both_ways and back.mode == mode
        assert jax.tree.structure(back.layers) == jax.tree.structure(list(stack.layers))
        for got, want in zip(jax.tree.leaves(back.layers), jax.tree.leaves(stack.layers), strict=True):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
        first = stack.layers[0][0] if both_ways else stack.layers[0]
        np.testing.assert_array_equal(exported["bias_ih_l0"], first["b"])
        bias_hh = np.zeros(first["b"].shape, np.float32)
        if mode == "GRU":
            bias_hh[2 * H :] = first["b_hn"]
        np.testing.assert_array_equal(exported["bias_hh_l0"], bias_hh)
    cast = pytorch.load(exported, mode.lower(), dtype=jnp.bfloat16)
    assert {a.dtype for a in jax.tree.leaves(cast.layers)} == {jnp.dtype(jnp.bfloat16)}


def one_line_error(call, match):
    with pytest.raises(ValueError, match=match) as caught:
        call()
    assert "\n" not in str(caught.value)


def test_bad_input_is_one_line_naming_the_key():
    exported = pytorch.export(random_stack("LSTM", None, True, seed=4))
    missing = {k: v for k, v in exported.items() if k != "bias_hh_l1"}
    one_line_error(lambda: pytorch.load(missing, "LSTM"), r"no 'bias_hh_l1' \(of shape \(16,\) in a 2-layer bidirect")
    wrong = {**exported, "weight_hh_l0": np.zeros((16, 3), np.float32)}
    one_line_error(lambda: pytorch.load(wrong, "lstm"), r"'weight_hh_l0' has shape \(16, 3\); expected \(16, 4\)")
    extra = {**exported, "embedding.weight": np.zeros((5, 3), np.float32)}
    one_line_error(lambda: pytorch.load(extra, "LSTM"), r"unexpected key 'embedding.weight'.*give its prefix")
    one_line_error(lambda: pytorch.load(exported, "LSTM", prefix="rnn."), r"no 'rnn.weight_ih_l0'")
    one_line_error(lambda: pytorch.load(exported, "LSTMP"), r"unknown PyTorch recurrent mode 'LSTMP'.*RNN_TANH")
    one_line_error(lambda: pytorch.load(exported, "GRU"), r"'weight_ih_l0' has shape \(16, 3\); expected \(3 \* hidden")

    stack = random_stack("LSTM", None, True, seed=4)
    one_line_error(lambda: pytorch.export(dataclasses.replace(stack, both_ways=False)), r"layers\[0\] is not one")
    one_line_error(lambda: pytorch.export(dataclasses.replace(stack, layers=[])), r"export: the stack has no layers")
    peephole = [({**f, "peephole": jnp.zeros((3, H))}, b) for f, b in stack.layers]
    one_line_error(lambda: pytorch.export(dataclasses.replace(stack, layers=peephole)), r"layers\[0\].*peephole")
    one_line_error(lambda: pytorch.initial_carries(stack, np.zeros((4, B, H))), r"LSTM takes \(h0, c0\)")
    h0 = np.zeros((2, B, H))
    one_line_error(lambda: pytorch.initial_carries(stack, h0, h0), r"h0 has shape \(2, 2, 4\); expected \[4 \(layers")


def test_live_pytorch_modules():
    """With torch: a fresh module's state dict loaded runs as PyTorch runs it; seqjax params exported and loaded by
    ``load_state_dict`` run in PyTorch as in seqjax (float64, batch-first, zero initial state)."""
    torch = pytest.importorskip("torch")
    modules = {
        "RNN_RELU": torch.nn.RNN(D, H, num_layers=2, nonlinearity="relu", bidirectional=True, batch_first=True),
        "LSTM": torch.nn.LSTM(D, H, num_layers=2, bidirectional=True, proj_size=P, batch_first=True),
        "GRU": torch.nn.GRU(D, H, num_layers=2, bidirectional=True, batch_first=True),
    }
    x = np.random.default_rng(5).standard_normal((B, T, D))
    with jax.enable_x64(True):
        for mode, module in modules.items():
            module = module.double()
            stack = pytorch.load(module.state_dict(), module.mode)
            run = jax.jit(
                lambda params, x, cell=stack.cell: layers.unroll_layers(cell, params, x, both_ways=True).outputs
            )
            theirs = module(torch.from_numpy(x))[0].detach().numpy()
            np.testing.assert_allclose(run(stack.layers, x), theirs, rtol=0, atol=TOL, err_msg=f"load {mode}")

            fresh = random_stack(mode, P if mode == "LSTM" else None, True, seed=6)
            fresh = jax.tree.map(lambda a: a.astype(jnp.float64), fresh.layers)
            module.load_state_dict(
                {k: torch.from_numpy(v) for k, v in pytorch.export(pytorch.Stack(mode, fresh, True)).items()}
            )
            theirs = module(torch.from_numpy(x))[0].detach().numpy()
            np.testing.assert_allclose(run(fresh, x), theirs, rtol=0, atol=TOL, err_msg=f"export {mode}")
