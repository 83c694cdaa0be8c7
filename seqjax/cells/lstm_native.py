"""The LSTM's fused sequence with its two time loops in a native CPU kernel (``seqjax/native/lstm_sequence.cc``).

``with_native(fused_jax, kernel)`` wraps the LSTM's pure-JAX fused sequence (``seqjax.cells.fused``) so that on
XLA:CPU the forward loop and the backward loop each run as one call of the kernel:

    forward:   U = X W_ih                       XLA, one [t*b, d] x [d, 4h] product (as in the pure-JAX path)
               for t: z_t = (u_t + h_{t-1} W_hh) + b, the gates, c_t, h_t                 the kernel, one call
    backward:  for t (reversed): dz_t from the saved gates, dh_{t-1} = dz_t W_hh^T          the kernel, one call
               dW_hh = H_prev^T dZ, db = sum dZ, and autodiff of U = X W_ih                XLA, as before

XLA:CPU runs each step's gate arithmetic as about ten small kernels forward and eleven backward and re-reads W_hh
in every step's product; the kernel packs W_hh once per sequence, keeps a tile of all four gates in vector
registers and applies the gates to it there, with the hidden units split over threads (one barrier per step).
The equations and what is saved for the backward pass are those of the pure-JAX path; the sums run in another
order and the kernel has its own exp and tanh, so the two paths agree to float rounding (a few ulp per step), not
bit for bit. Either path alone gives the same numbers run after run, whatever the number of threads.

``kernel``: ``"auto"`` takes the native loops where they apply (``unsupported`` is empty) and the kernel can be
built, and says in one line on stderr, once, when it cannot be built; ``"native"`` raises ``ValueError`` where they
do not apply or cannot be built; ``"jax"`` never takes them.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import parallel, precision
from seqjax.cells.base import matmul_rows
from seqjax.native import build
from seqjax.native.build import NativeUnavailable

FORWARD_TARGET = "seqjax_lstm_sequence_forward"
BACKWARD_TARGET = "seqjax_lstm_sequence_backward"
KERNELS = ("auto", "native", "jax")
MAX_THREADS = 8  # the step's product splits the hidden units; more threads than that wait at each step's barrier

__all__ = [
    "KERNELS",
    "NativeUnavailable",
    "build_error",
    "check_kernel",
    "load",
    "runs_native",
    "sequence",
    "unsupported",
    "with_native",
]


@functools.cache
def load() -> None:
    """Compiles (once per source, compiler and machine) and registers the kernel; ``NativeUnavailable`` (one line)
    where it cannot be built."""
    library = build.library("lstm_sequence")
    jax.ffi.register_ffi_target(FORWARD_TARGET, jax.ffi.pycapsule(library.LstmSequenceForward), platform="cpu")
    jax.ffi.register_ffi_target(BACKWARD_TARGET, jax.ffi.pycapsule(library.LstmSequenceBackward), platform="cpu")


def build_error() -> str:
    """ "" where the kernel is built and registered, else the one line why it cannot be (``seqjax.native.build``
    remembers a failure, so asking again on every trace costs nothing)."""
    try:
        load()
    except NativeUnavailable as e:
        return str(e)
    return ""


def check_kernel(kernel: str) -> None:
    """``ValueError`` (one line) unless ``kernel`` is one of ``KERNELS``."""
    if kernel not in KERNELS:
        raise ValueError(f"lstm(kernel={kernel!r}): expected one of {', '.join(KERNELS)}")


def threads() -> int:
    """The kernel's threads: the CPUs this process may use, at most ``MAX_THREADS``."""
    return min(parallel.cpu_count(), MAX_THREADS)


def unsupported(params, xs: jax.Array, carry, valid, remat: bool, restart) -> str:
    """Why the native loops do not apply to this call of the fused sequence; "" where they do."""
    if jax.default_backend() != "cpu":
        return f"it runs on CPU only (the default backend is {jax.default_backend()})"
    if valid is not None or restart is not None or remat:
        return "it has no padded steps, restarts or remat (lengths, resets, remat)"
    arrays = {"xs": xs, **{f"params[{k!r}]": v for k, v in params.items()}, "hidden": carry[0], "cell": carry[1]}
    for name, value in arrays.items():
        if value.dtype != jnp.float32:
            return f"it computes in float32 only ({name} is {value.dtype})"
    if set(params) != {"w_ih", "w_hh", "b"}:
        return "it has no peepholes or projection"
    if 0 in (xs.shape[0], xs.shape[1], params["w_hh"].shape[0]):
        return "it needs at least one step, one row and one unit"
    return ""


def _shape(*shape: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def _forward_call(us, b, w_hh, h0, c0):
    steps, batch, hidden = us.shape[0], us.shape[1], w_hh.shape[0]
    call = jax.ffi.ffi_call(
        FORWARD_TARGET,
        (_shape(steps, batch, hidden), _shape(steps, batch, hidden), _shape(steps, batch, 4 * hidden)),
        vmap_method="sequential",
    )
    return call(us, b, w_hh, h0, c0, threads=np.int64(threads()))


def _backward_call(w_hh, acts, cs, c0, dys, dh_last, dc_last):
    steps, batch, hidden = cs.shape
    call = jax.ffi.ffi_call(
        BACKWARD_TARGET,
        (_shape(steps, batch, 4 * hidden), _shape(batch, hidden), _shape(batch, hidden)),
        vmap_method="sequential",
    )
    return call(w_hh, acts, cs, c0, dys, dh_last, dc_last, threads=np.int64(threads()))


@jax.custom_vjp
def _loops(b, w_hh, us, h0, c0):
    hs, cs, _ = _forward_call(us, b, w_hh, h0, c0)
    return (hs[-1], cs[-1]), hs


def _loops_fwd(b, w_hh, us, h0, c0):
    hs, cs, acts = _forward_call(us, b, w_hh, h0, c0)
    return ((hs[-1], cs[-1]), hs), (w_hh, h0, c0, hs, cs, acts)


def _loops_bwd(residuals, cotangents):
    w_hh, h0, c0, hs, cs, acts = residuals
    (dh_last, dc_last), dys = cotangents
    dus, dh0, dc0 = _backward_call(w_hh, acts, cs, c0, dys, dh_last, dc_last)
    rows = dus.shape[0] * dus.shape[1]
    h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0).reshape(rows, -1)
    dw_hh = precision.dot(h_prev.T, dus.reshape(rows, -1), dus.dtype)
    return jnp.sum(dus, axis=(0, 1)), dw_hh, dus, dh0, dc0


_loops.defvjp(_loops_fwd, _loops_bwd)


def sequence(params, xs: jax.Array, carry):
    """The LSTM over time-major ``xs [t, b, d]`` from ``carry`` (``LSTMCarry`` of [b, h] each) with the native
    loops: ``((h_T, c_T), ys [t, b, h])``. The caller checks ``unsupported`` first."""
    us = matmul_rows(xs, params["w_ih"])
    (h_last, c_last), ys = _loops(params["b"], params["w_hh"], us, carry[0], carry[1])
    return type(carry)(h_last, c_last), ys


@functools.cache
def runs_native(kernel: str) -> Callable[..., bool] | None:
    """The LSTM cell's ``fused_faster`` (``seqjax.cells.base.Cell``): whether these inputs run the native loops,
    which are faster than the scanned step at every shape measured (``seqjax.scan.fused_by_default``). None for
    ``kernel="jax"``."""
    if kernel == "jax":
        return None

    def applies(params, xs, carry, valid=None, remat=False, restart=None) -> bool:
        return not unsupported(params, xs, carry, valid, remat, restart) and not build_error()

    return applies


@functools.cache
def _notice(reason: str) -> None:
    print(f"seqjax: the LSTM's fused sequence uses its pure-JAX loops (slower): {reason}", file=sys.stderr)


@functools.cache
def with_native(fused_jax: Callable, kernel: str = "auto") -> Callable:
    """The LSTM's ``fused`` function: the native loops where ``kernel`` asks for them and they apply, else
    ``fused_jax`` (the module docstring). One function per pair, so that equal cells compare equal."""
    check_kernel(kernel)
    if kernel == "jax":
        return fused_jax

    def fused(params, xs, carry, valid=None, remat=False, restart=None, reset_carry=None):
        reason = unsupported(params, xs, carry, valid, remat, restart)
        if reason:
            if kernel == "native":
                raise ValueError(f"lstm(kernel='native'): the native LSTM loops do not apply: {reason}")
            return fused_jax(params, xs, carry, valid, remat, restart, reset_carry)
        error = build_error()
        if error:
            if kernel == "native":
                raise ValueError(f"lstm(kernel='native'): the native LSTM loops cannot be built: {error}")
            _notice(error)
            return fused_jax(params, xs, carry, valid, remat, restart, reset_carry)
        return sequence(params, xs, carry)

    return fused
