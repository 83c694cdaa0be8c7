"""PyTorch's ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` state dicts as seqjax layers, and back.

Nothing here imports torch. A state dict is read as a mapping of names to arrays (a torch tensor becomes a NumPy
array by duck typing, ``t.detach().cpu().numpy()``); ``export`` writes NumPy arrays, which
``{k: torch.from_numpy(v) for k, v in ...}`` turns into a state dict that ``module.load_state_dict`` takes.

Per layer k and direction (the backward one's names end in ``_reverse``), with G gates, h hidden units and o the
output size (h, or p for ``nn.LSTM(proj_size=p)``, seqjax's ``lstm(proj_size=p)``)::

    weight_ih_l{k}  [G h, d_k]           ->  w_ih = weight_ih^T  [d_k, G h]     d_0: input size; d_k = dirs * o
    weight_hh_l{k}  [G h, o]             ->  w_hh = weight_hh^T  [o, G h]
    bias_ih_l{k}, bias_hh_l{k}  [G h]    ->  b = bias_ih + bias_hh  [G h]      (the GRU: below)
    weight_hr_l{k}  [p, h]               ->  w_hr = weight_hr^T  [h, p]         (LSTM with proj_size)

The gate orders agree: LSTM (i, f, g, o), GRU (r, z, n). PyTorch's GRU is ``seqjax.gru(reset_after=True)``,
n_t = tanh(x W_in + b_in + r_t * (h_{t-1} W_hn + b_hn)): the candidate's recurrent bias stays inside the reset
product, so b = [b_ir + b_hr, b_iz + b_hz, b_in] and ``b_hn`` is ``bias_hh``'s third block. ``mode`` is PyTorch's
own name, a module's ``.mode``: RNN_TANH, RNN_RELU, LSTM or GRU.

Where seqjax holds one bias and PyTorch two, the split is a choice: ``export`` writes the whole bias into
``bias_ih`` and zeros into ``bias_hh`` (the GRU's ``b_hn`` into ``bias_hh``'s third block). PyTorch adds the two,
so it computes the same function, and ``load(export(stack))`` gives back the same parameters exactly.

Layouts: seqjax is batch-major ``[b, t, d]``; PyTorch is time-major unless ``batch_first=True``: give such inputs
``[t, b, d]`` to ``unroll_layers(..., time_major=True)``. PyTorch's initial and final states are
``h [layers * dirs, b, o]`` and (LSTM) ``c [layers * dirs, b, h]``, row ``k * dirs + direction``, whatever
``batch_first`` is: ``initial_carries`` and ``final_state`` convert them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqjax.cells.base import Carry, Cell, Params
from seqjax.cells.gru import gru
from seqjax.cells.lstm import LSTMCarry, lstm
from seqjax.cells.rnn import rnn

GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}  # PyTorch's modes and their gate blocks
NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")  # PyTorch's order within a layer


@dataclasses.dataclass(frozen=True)
class Stack:
    """A PyTorch recurrent module's parameters in the layout of ``seqjax.layers.unroll_layers``.

    Run it with ``layers.unroll_layers(stack.cell, stack.layers, xs, both_ways=stack.both_ways)``. A one-way stack
    also runs as one cell, ``layers.stacked([stack.cell] * len(stack.layers))`` with params ``tuple(stack.layers)``.

    Attributes:
      mode: RNN_TANH, RNN_RELU, LSTM or GRU.
      layers: per layer the cell's params (``w_ih``, ``w_hh``, ``b``; the GRU's ``b_hn``; ``w_hr`` with a
        projection), a ``(forward, backward)`` pair per layer when ``both_ways``: as ``init_layers`` makes them.
      both_ways: whether every layer is bidirectional.
    """

    mode: str
    layers: Sequence[Params]
    both_ways: bool = False

    @property
    def proj_size(self) -> int | None:
        """p of an LSTM with a projection (its ``w_hr [h, p]``), else ``None``."""
        first = self.layers[0][0] if self.both_ways else self.layers[0]
        return first["w_hr"].shape[1] if "w_hr" in first else None

    @property
    def cell(self) -> Cell:
        """The seqjax cell of every layer and direction (the LSTM's ``forget_bias`` only sets an initial value:
        0, PyTorch's, for ``init_layers``)."""
        return cell_for(self.mode, self.proj_size)


def cell_for(mode: str, proj_size: int | None = None) -> Cell:
    """The seqjax cell that computes what PyTorch's ``mode`` computes (``proj_size`` for the LSTM alone)."""
    mode = _checked_mode(mode)
    if proj_size is not None and mode != "LSTM":
        raise ValueError(f"proj_size={proj_size}: only PyTorch's LSTM has a projection, not {mode}")
    if mode == "LSTM":
        return lstm(forget_bias=0.0, proj_size=proj_size)
    if mode == "GRU":
        return gru(reset_after=True)
    return rnn("tanh" if mode == "RNN_TANH" else "relu")


def load(state_dict: Mapping[str, Any], mode: str, *, prefix: str = "", dtype=None) -> Stack:
    """A PyTorch ``nn.RNN``/``nn.LSTM``/``nn.GRU`` state dict as seqjax layers.

    The number of layers, the directions, the input, hidden and projection sizes are read from the names and
    shapes, and every tensor is checked against them.

    Args:
      state_dict: names -> arrays or torch tensors (``module.state_dict()``).
      mode: RNN_TANH, RNN_RELU, LSTM or GRU (``module.mode``; any case).
      prefix: what precedes the recurrent module's names in a larger model's state dict (``"encoder."``); only
        names that start with it are read.
      dtype: the parameters' dtype; ``None`` keeps the state dict's.

    Returns:
      A ``Stack``: the mode, the layers (JAX arrays) and whether they are bidirectional.

    Raises:
      ValueError: in one line naming the key, for a missing or unexpected key or a wrong shape, or an unknown mode.
    """
    mode = _checked_mode(mode)
    arrays = {name[len(prefix) :]: value for name, value in state_dict.items() if name.startswith(prefix)}
    shapes = _expected_shapes(mode, arrays, prefix)
    tensors = {}
    for name, shape in shapes.items():
        if name not in arrays:
            raise ValueError(f"the state dict has no {prefix + name!r} (of shape {shape} in {_describe(mode, shapes)})")
        tensors[name] = _numpy(arrays[name])
        if tensors[name].shape != shape:
            raise ValueError(
                f"{prefix + name!r} has shape {tensors[name].shape}; expected {shape} for {_describe(mode, shapes)}"
            )
    unexpected = sorted(set(arrays) - set(shapes))
    if unexpected:
        raise ValueError(
            f"unexpected key {prefix + unexpected[0]!r} in the state dict of {_describe(mode, shapes)} "
            "(a larger model's state dict: give its prefix)"
        )
    both_ways = "weight_ih_l0_reverse" in shapes
    num_layers = sum(name.startswith("weight_ih_l") for name in shapes) // (2 if both_ways else 1)
    layers = []
    for k in range(num_layers):
        directions = [_params(mode, tensors, f"_l{k}{suffix}", dtype) for suffix in _suffixes(both_ways)]
        layers.append(tuple(directions) if both_ways else directions[0])
    return Stack(mode, layers, both_ways)


def export(stack: Stack) -> dict[str, np.ndarray]:
    """seqjax layers as a PyTorch state dict of NumPy arrays, in PyTorch's names and order.

    Each summed bias goes into ``bias_ih`` and ``bias_hh`` is zero (the GRU's ``b_hn`` into ``bias_hh``'s third
    block): PyTorch computes the same function, and ``load(export(stack))`` equals ``stack`` exactly.

    Raises:
      ValueError: in one line, for a layer that is not a ``(forward, backward)`` pair when ``both_ways`` (or is one
        when not), a parameter PyTorch's module has no place for (the LSTM's peepholes, a GRU without ``b_hn``), or
        shapes that do not make one PyTorch module.
    """
    mode = _checked_mode(stack.mode)
    if not stack.layers:
        raise ValueError("export: the stack has no layers")
    tensors = {}
    for k, layer in enumerate(stack.layers):
        pair = isinstance(layer, (tuple, list))
        if pair != stack.both_ways or (pair and len(layer) != 2):
            expected = "a (forward, backward) pair" if stack.both_ways else "one direction's params (both_ways=False)"
            raise ValueError(f"export: layers[{k}] is not {expected}")
        for suffix, params in zip(_suffixes(stack.both_ways), layer if pair else (layer,), strict=True):
            tensors.update(_torch_tensors(mode, params, f"_l{k}{suffix}", f"layers[{k}]{suffix}"))
    shapes = _expected_shapes(mode, tensors, "")
    for name, shape in shapes.items():
        if name not in tensors or tensors[name].shape != shape:
            got = tensors[name].shape if name in tensors else "nothing"
            raise ValueError(f"export: {name!r} would be {got}; expected {shape} for {_describe(mode, shapes)}")
    unexpected = sorted(set(tensors) - set(shapes))
    if unexpected:
        where = _describe(mode, shapes)
        raise ValueError(f"export: {unexpected[0]!r} has no place in {where} (a w_hr in some layers only?)")
    return tensors


def initial_carries(stack: Stack, h0, c0=None) -> list[Carry]:
    """PyTorch's initial state ``h0`` (and the LSTM's ``c0``) as ``unroll_layers``' ``initial_carries``.

    Args:
      stack: the layers the state is for.
      h0: ``[layers * dirs, b, o]``, row ``k * dirs + direction``; arrays or torch tensors.
      c0: ``[layers * dirs, b, h]``: the LSTM's cell state (required for it, refused for the others).

    Returns:
      One carry per layer (``LSTMCarry(hidden, cell)`` for the LSTM), a ``(forward, backward)`` pair when
      ``stack.both_ways``.
    """
    lstm_mode = _checked_mode(stack.mode) == "LSTM"
    if (c0 is not None) != lstm_mode:
        raise ValueError(f"initial_carries: PyTorch's {stack.mode} takes {'(h0, c0)' if lstm_mode else 'h0 alone'}")
    dirs = 2 if stack.both_ways else 1
    rows = len(stack.layers) * dirs
    states = [jnp.asarray(_from_torch(s)) for s in ((h0, c0) if lstm_mode else (h0,))]
    for name, state in zip(("h0", "c0"), states, strict=False):
        if state.ndim != 3 or state.shape[0] != rows:
            expected = f"[{rows} (layers * dirs), b, ...]"
            raise ValueError(f"initial_carries: {name} has shape {state.shape}; expected {expected}")

    def carry(row):
        return LSTMCarry(states[0][row], states[1][row]) if lstm_mode else states[0][row]

    per_row = [carry(row) for row in range(rows)]
    return [tuple(per_row[k * 2 : k * 2 + 2]) if stack.both_ways else per_row[k] for k in range(len(stack.layers))]


def final_state(stack: Stack, carries: Sequence[Carry]):
    """``unroll_layers``' final carries as PyTorch returns them: ``h_n [layers * dirs, b, o]``, and for the LSTM
    ``(h_n, c_n)`` with ``c_n [layers * dirs, b, h]``; row ``k * dirs + direction``."""
    rows = [c for layer in carries for c in (layer if stack.both_ways else (layer,))]
    if _checked_mode(stack.mode) == "LSTM":
        return jnp.stack([c.hidden for c in rows]), jnp.stack([c.cell for c in rows])
    return jnp.stack(rows)


def _checked_mode(mode: str) -> str:
    upper = str(mode).upper()
    if upper not in GATES:
        raise ValueError(f"unknown PyTorch recurrent mode {mode!r}; expected one of {', '.join(GATES)} (module.mode)")
    return upper


def _suffixes(both_ways: bool) -> tuple[str, ...]:
    return ("", "_reverse") if both_ways else ("",)


def _from_torch(value):
    """A torch tensor as a NumPy array (duck typing: torch is not imported); anything else as it is."""
    return value.detach().cpu().numpy() if hasattr(value, "detach") else value


def _numpy(value) -> np.ndarray:
    return np.asarray(_from_torch(value))


def _expected_shapes(mode: str, arrays: Mapping[str, Any], prefix: str) -> dict[str, tuple[int, ...]]:
    """Every name a PyTorch module of ``mode`` has, with its shape, sized from ``weight_ih_l0`` and
    ``weight_hr_l0`` and counted from the ``weight_ih_l{k}`` names present; in PyTorch's order."""
    gates = GATES[mode]
    if "weight_ih_l0" not in arrays:
        raise ValueError(f"the state dict has no {prefix + 'weight_ih_l0'!r}: expected a PyTorch {mode}'s")
    first = tuple(np.shape(arrays["weight_ih_l0"]))
    if len(first) != 2 or first[0] % gates or not first[0]:
        expected = f"({gates} * hidden, input) for {mode}"
        raise ValueError(f"{prefix + 'weight_ih_l0'!r} has shape {first}; expected {expected}")
    hidden, input_size = first[0] // gates, first[1]
    proj = tuple(np.shape(arrays["weight_hr_l0"])) if mode == "LSTM" and "weight_hr_l0" in arrays else None
    if proj is not None and (len(proj) != 2 or proj[1] != hidden):
        raise ValueError(f"{prefix + 'weight_hr_l0'!r} has shape {proj}; expected (proj_size, {hidden})")
    out = proj[0] if proj is not None else hidden
    both_ways = "weight_ih_l0_reverse" in arrays
    num_layers = 1
    while f"weight_ih_l{num_layers}" in arrays:
        num_layers += 1
    shapes = {}
    for k in range(num_layers):
        width = input_size if k == 0 else (2 if both_ways else 1) * out
        for suffix in _suffixes(both_ways):
            shape = {
                "weight_ih": (gates * hidden, width),
                "weight_hh": (gates * hidden, out),
                "bias_ih": (gates * hidden,),
                "bias_hh": (gates * hidden,),
                "weight_hr": (out, hidden),
            }
            for name in NAMES[:4] + (("weight_hr",) if proj is not None else ()):
                shapes[f"{name}_l{k}{suffix}"] = shape[name]
    return shapes


def _describe(mode: str, shapes: Mapping[str, tuple[int, ...]]) -> str:
    both_ways = "weight_ih_l0_reverse" in shapes
    layers = sum(name.startswith("weight_ih_l") for name in shapes) // (2 if both_ways else 1)
    hidden = shapes["weight_hh_l0"][0] // GATES[mode]
    sizes = f"input {shapes['weight_ih_l0'][1]}, hidden {hidden}"
    if "weight_hr_l0" in shapes:
        sizes += f", proj_size {shapes['weight_hr_l0'][0]}"
    return f"a {layers}-layer {'bidirectional ' if both_ways else ''}{mode} ({sizes})"


def _params(mode: str, tensors: Mapping[str, np.ndarray], tail: str, dtype) -> Params:
    """One direction's seqjax params from its PyTorch tensors (names ending in ``tail``, e.g. ``_l1_reverse``)."""
    b_ih, b_hh = tensors["bias_ih" + tail], tensors["bias_hh" + tail]
    params = {"w_ih": tensors["weight_ih" + tail].T, "w_hh": tensors["weight_hh" + tail].T}
    if mode == "GRU":  # r and z: one summed bias; n: b_in outside the reset product, b_hn inside it
        split = 2 * (b_ih.shape[0] // 3)
        params["b"] = np.concatenate([b_ih[:split] + b_hh[:split], b_ih[split:]])
        params["b_hn"] = b_hh[split:]
    else:
        params["b"] = b_ih + b_hh
    if "weight_hr" + tail in tensors:
        params["w_hr"] = tensors["weight_hr" + tail].T
    return {name: jnp.asarray(np.ascontiguousarray(a), dtype) for name, a in params.items()}


def _torch_tensors(mode: str, params: Params, tail: str, where: str) -> dict[str, np.ndarray]:
    """One direction's PyTorch tensors (names ending in ``tail``) from its seqjax params."""
    allowed = {"w_ih", "w_hh", "b"} | ({"b_hn"} if mode == "GRU" else set()) | ({"w_hr"} if mode == "LSTM" else set())
    required = allowed - {"w_hr"}
    names = set(params) if isinstance(params, Mapping) else set()
    if not isinstance(params, Mapping) or not required <= names or not names <= allowed:
        odd = sorted(names - allowed) or sorted(required - names)
        raise ValueError(
            f"export: {where} has {sorted(names) if names else type(params).__name__}, not the params of PyTorch's "
            f"{mode} (expected {', '.join(sorted(required))}{', optionally w_hr' if mode == 'LSTM' else ''}; "
            f"at odds: {', '.join(odd) if odd else 'the structure'})"
        )
    array = {name: np.asarray(jax.device_get(value)) for name, value in params.items()}
    bias = array["b"]
    if mode == "GRU":
        split = 2 * (bias.shape[0] // 3)
        bias_hh = np.concatenate([np.zeros_like(bias[:split]), array["b_hn"]])
    else:
        bias_hh = np.zeros_like(bias)
    tensors = {
        "weight_ih": array["w_ih"].T,
        "weight_hh": array["w_hh"].T,
        "bias_ih": bias,
        "bias_hh": bias_hh,
    }
    if "w_hr" in array:
        tensors["weight_hr"] = array["w_hr"].T
    return {name + tail: np.array(a, order="C") for name, a in tensors.items()}  # writable copies: torch.from_numpy
