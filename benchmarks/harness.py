r"""Throughput of one training step (forward + backward over the whole sequence): seqjax vs Flax vs PyTorch.

For every cell (rnn with tanh, lstm, gru), shape B x T x H (input size D = H) and implementation:

    seqjax fused             seqjax.unroll over seqjax.rnn() / lstm(forget_bias=0) / gru(): the cells' fused
                             sequences (hand-written VJP, seqjax.cells.fused), what unroll takes by default
    seqjax scan(unroll=k)    the same cells with fused=False: lax.scan over the step, unroll=k, autodiff
    flax <Cell>              flax.linen.RNN over SimpleCell, LSTMCell, OptimizedLSTMCell (lstm), GRUCell
    torch                    torch.nn.RNN / LSTM / GRU (batch_first), only if torch is installed (cuDNN on a GPU)
    jax.experimental.rnn     jax.experimental.rnn.lstm, JAX's binding of the cuDNN LSTM (lstm only; GPU only:
                             elsewhere the row is skipped), on the seqjax LSTM's weights in cuDNN's flat layout
                             (``cudnn_lstm_weights``), so its loss equals the seqjax row's

Any other cell ``seqjax.cells.cell_by_name`` builds (``rnn_relu``, ``mingru``, a user's ``file.py:attr``) gets the
seqjax rows alone (its fused row only if it has a fused sequence), without a FLOP count; the table's notes say so.

the step is ``loss = mean(y**2)`` over all outputs and its gradient w.r.t. all parameters, on fixed
N(0, 1) inputs (same seed for every implementation). JAX steps are ``jax.jit(jax.value_and_grad(loss))``.

``dtype`` (``--dtype``, float32 by default) is the dtype of the parameters and inputs of every implementation:
with ``bfloat16``, seqjax's parameters are cast with ``seqjax.precision.cast_floating`` (its products then take
bfloat16 operands and sum in float32, its carry stays float32: ``seqjax.precision``), Flax's cells get
``dtype=param_dtype=bfloat16`` (the float32 initial parameters cast: Flax's orthogonal initialiser has no
bfloat16 QR on CPU; Flax then keeps its carry in bfloat16), torch's module and inputs are ``torch.bfloat16``.
The loss is taken in float32 and the gradients come in the parameters' dtype. The FLOP count does not depend on
the dtype. An implementation that refuses the dtype is a skipped row whose note says so (one line).
Each measurement runs in its own subprocess (``python benchmarks/harness.py SPEC``), so allocator state and
compilation caches do not leak from one implementation into the next. A measurement times ``steps`` steps, or
fewer (at least 3) once it has spent ``budget_s`` seconds, so that large shapes stay affordable.

The machine's matmul peak is measured the same way: the best GFLOP/s of an N x N x N product in the run's dtype
(N = 2048, ``--peak_size``) in JAX and in torch, each in its own subprocess; every row reports its fraction of it.

The command-line entry point is ``benchmarks/benchmark.py``; run as a module with one JSON spec,
this file measures that spec and prints one JSON line (the worker).
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from absl import flags, logging

from seqjax import workdir as workdir_lib

# JAX, Flax, seqjax and torch are imported inside the worker functions, not here: each worker then loads
# only the framework it measures (JAX alone adds ~130 MiB to the peak RSS of a torch worker), and the parent
# process never initialises an accelerator that its workers need.

KNOWN_CELLS = ("rnn", "lstm", "gru")
KNOWN_IMPLS = ("seqjax", "flax", "torch", "jax_rnn")
DTYPES = ("float32", "bfloat16")
GATE_BLOCKS = {"rnn": 1, "lstm": 4, "gru": 3}
FLAX_VARIANTS = {"rnn": ("SimpleCell",), "lstm": ("LSTMCell", "OptimizedLSTMCell"), "gru": ("GRUCell",)}
TORCH_MISSING = "torch not installed (pip install torch==2.13.0 for the comparison)"
JAX_RNN_LABEL = "jax.experimental.rnn"
JAX_RNN_NEEDS_GPU = "jax.experimental.rnn (the cuDNN LSTM) needs a GPU (cuDNN): not measured on {platform}"
USER_CELLS = (
    "{cells}: seqjax rows only (Flax, PyTorch and jax.experimental.rnn have no counterpart; 'seqjax fused' where the "
    "cell has a fused sequence), GFLOP/s '-' (no analytic count)"
)
LM_FLOAT32_ONLY = "language-model rows run in float32 only: not measured at --dtype={dtype}"
SEED = 0
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"


@dataclasses.dataclass(frozen=True)
class Shape:
    """Batch B, time T, hidden H; the input size D equals H."""

    batch: int
    time: int
    hidden: int

    @property
    def input_size(self) -> int:
        return self.hidden

    def __str__(self) -> str:
        return f"{self.batch}x{self.time}x{self.hidden}"


def parse_shape(text: str) -> Shape:
    """``"32x128x256"`` -> ``Shape(batch=32, time=128, hidden=256)``; ValueError if malformed."""
    parts = text.strip().lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"malformed shape {text!r}: expected BxTxH with positive integers, e.g. 32x128x256")
    return Shape(*(int(p) for p in parts))


def parse_unrolls(values: Sequence[str]) -> list[int]:
    """``["1", "4"]`` -> ``[1, 4]``; ValueError unless every entry is a positive integer."""
    if not values or not all(v.strip().isdigit() and int(v) > 0 for v in values):
        raise ValueError(f"expected a list of positive integers, e.g. 1,4; got {','.join(values)!r}")
    return [int(v) for v in values]


def check_names(values: Sequence[str], known: Sequence[str], what: str) -> bool:
    """A list flag's validator: every value in ``known``, at least one; else ``flags.ValidationError``."""
    unknown = [v for v in values if v not in known]
    if unknown or not values:
        got = f"unknown {what} {', '.join(map(repr, unknown))}" if unknown else f"no {what} given"
        raise flags.ValidationError(f"{got}; known: {', '.join(known)}")
    return True


def check_shapes(values: Sequence[str]) -> bool:
    """--shapes' validator: at least one, each ``BxTxH`` (``parse_shape``)."""
    if not values:
        raise flags.ValidationError("give at least one shape BxTxH, e.g. 32x128x256")
    try:
        for value in values:
            parse_shape(value)
    except ValueError as e:
        raise flags.ValidationError(str(e)) from e
    return True


def check_unrolls(values: Sequence[str]) -> bool:
    """--seqjax_unrolls' validator (``parse_unrolls``)."""
    try:
        parse_unrolls(values)
    except ValueError as e:
        raise flags.ValidationError(str(e)) from e
    return True


def train_step_flops(cell: str, shape: Shape) -> int | None:
    """Analytic FLOPs of one training step of rnn, lstm or gru, counting the matrix products only (None for
    another cell: a user's cell has no count).

    Forward: at each of the T steps, ``x_t [B, D] @ W_ih [D, G*H]`` and ``h [B, H] @ W_hh [H, G*H]``,
    a multiply-add being 2 FLOPs::

        forward = 2 * B * T * (D + H) * G * H        G = 1 (rnn), 4 (lstm), 3 (gru) gate blocks

    The backward pass takes two products of the same size per forward product (gradients w.r.t. the
    product's input and its weight), so a training step counts ``3 * forward``. Bias adds and gate
    nonlinearities (O(B*T*G*H)) are left out.
    """
    if cell not in GATE_BLOCKS:
        return None
    forward = 2 * shape.batch * shape.time * (shape.input_size + shape.hidden) * GATE_BLOCKS[cell] * shape.hidden
    return 3 * forward


# ----------------------------------------------------------------------------------------------------------------------
# What to measure.


def build_specs(
    cells: Sequence[str],
    shapes: Sequence[Shape],
    impls: Sequence[str],
    unrolls: Sequence[int],
    steps: int,
    warmup: int,
    budget_s: float = 60.0,
    dtype: str = "float32",
) -> list[dict[str, Any]]:
    """One JSON-able spec per (impl, cell, shape), grouped by cell, then shape, then implementation.

    ``jax_rnn`` (``jax.experimental.rnn``) has an LSTM only: no spec for the other cells. A cell other than
    ``KNOWN_CELLS`` (any name ``seqjax.cells.cell_by_name`` builds: a user's ``file.py:attr``) has seqjax specs only,
    the fused one if it has a fused sequence: Flax and PyTorch have no counterpart of it (``format_table`` says so)."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    specs = []
    for cell in cells:
        for shape in shapes:
            base = {"cell": cell, "shape": str(shape), "steps": steps, "warmup": warmup, "budget_s": budget_s}
            base["dtype"] = dtype
            if "seqjax" in impls:
                if cell in KNOWN_CELLS or seqjax_cell(cell).fused is not None:
                    specs.append({**base, "impl": "seqjax", "label": "seqjax fused", "fused": True, "unroll": 1})
                if cell == "lstm":  # the same fused sequence with its time loops in JAX, not the native kernel
                    label = "seqjax fused, pure-JAX loops"
                    specs.append(
                        {**base, "impl": "seqjax", "label": label, "fused": True, "unroll": 1, "kernel": "jax"}
                    )
                specs += [
                    {**base, "impl": "seqjax", "label": f"seqjax scan(unroll={k})", "fused": False, "unroll": k}
                    for k in unrolls
                ]
            if cell not in KNOWN_CELLS:
                continue
            if "flax" in impls:
                specs += [{**base, "impl": "flax", "label": f"flax {v}", "variant": v} for v in FLAX_VARIANTS[cell]]
            if "torch" in impls:
                specs.append({**base, "impl": "torch", "label": "torch"})
            if "jax_rnn" in impls and cell == "lstm":
                specs.append({**base, "impl": "jax_rnn", "label": JAX_RNN_LABEL})
    return specs


# ----------------------------------------------------------------------------------------------------------------------
# The worker: one measurement in a fresh process.


def cpu_count() -> int:
    """CPUs this process may run on (``seqjax.parallel.cpu_count``)."""
    from seqjax import parallel

    return parallel.cpu_count()


def _max_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


MIN_TIMED_STEPS = 3


def time_steps(
    step: Callable[[], Any], sync: Callable[[Any], Any], steps: int, warmup: int, budget_s: float = float("inf")
) -> tuple[float, list[float]]:
    """Times ``sync(step())``: the first call (compilation), ``warmup`` untimed calls, then ``steps`` timed ones.

    Once ``budget_s`` seconds have passed after the first call, warm-up stops (after at least one
    call) and timing stops after ``MIN_TIMED_STEPS`` steps.

    Returns ``(first_call_s, [step_s] * n)``, n <= steps.
    """
    start = time.perf_counter()
    sync(step())
    first = time.perf_counter() - start
    begun = time.perf_counter()
    for k in range(warmup):
        if k >= 1 and time.perf_counter() - begun > budget_s:
            break
        sync(step())
    times = []
    for _ in range(steps):
        if len(times) >= MIN_TIMED_STEPS and time.perf_counter() - begun > budget_s:
            break
        start = time.perf_counter()
        sync(step())
        times.append(time.perf_counter() - start)
    return first, times


def alternate_medians(paths: dict[str, Callable[[], Any]], steps: int, warmup: int = 2) -> dict[str, float]:
    """The median seconds of each path (a function of no arguments whose result ``jax.block_until_ready`` waits
    for), timed alternately ``steps`` times each after ``warmup`` untimed calls: both see the same machine."""
    import jax

    for path in paths.values():
        for _ in range(warmup):
            jax.block_until_ready(path())
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(steps):
        for name, path in paths.items():
            start = time.perf_counter()
            jax.block_until_ready(path())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def compare_grid(
    name: str,
    workdir: str,
    cells: Sequence[str],
    shapes: Sequence[str],
    steps: int,
    compare: Callable[[str, str, int], dict[str, Any]],
    format_table: Callable[[Sequence[dict[str, Any]]], str],
) -> None:
    """The two-path benchmarks' main (fused_vs_scan, parallel_vs_scan): claims ``workdir`` for these flags, runs
    ``compare(cell, shape, steps)`` for every shape and cell, printing each row as it comes, and writes
    results.json, results.md and the table."""
    config = {"cells": list(cells), "shapes": list(shapes), "steps": steps}
    out = workdir_lib.claim(workdir, name, config, fixed=tuple(config))
    rows = []
    for shape in shapes:
        for cell in cells:
            rows.append(compare(cell, shape, steps))
            print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    table = format_table(rows)
    workdir_lib.write_json(out / "results.json", {"flags": config, "results": rows})
    workdir_lib.write_atomic(out / "results.md", f"`{' '.join(sys.argv)}`\n\n" + table)
    print(table, end="")


def inputs(shape: Shape):
    """The N(0, 1) inputs ``xs [b, t, d]`` float32 of a shape, identical for every implementation."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    return rng.standard_normal((shape.batch, shape.time, shape.input_size), dtype=np.float32)


def cudnn_lstm_weights(params):
    """A seqjax LSTM's params (``w_ih [d, 4h]``, ``w_hh [h, 4h]``, ``b [4h]``, gates i, f, g, o) as the flat
    weight vector of ``jax.experimental.rnn.lstm`` (cuDNN's layout, one layer, one direction): ``W_ih [4h, d]``,
    ``W_hh [4h, h]``, ``b_ih = b``, ``b_hh = 0``; the gate order is the same. The same LSTM, so the same outputs."""
    import jax.numpy as jnp

    b = params["b"]
    return jnp.concatenate([params["w_ih"].T.ravel(), params["w_hh"].T.ravel(), b, jnp.zeros_like(b)])


def seqjax_cell(name: str, kernel: str = "auto"):
    """The seqjax cell the benchmark measures: a tanh RNN, an LSTM without a forget-gate bias (as Flax's and
    PyTorch's are initialised; ``kernel``: how its fused sequence runs its loops), a GRU, or any other cell
    ``seqjax.cells.cell_by_name`` builds (a user's)."""
    import seqjax
    from seqjax.cells import cell_by_name

    known = {
        "rnn": lambda: seqjax.rnn("tanh"),
        "lstm": lambda: seqjax.lstm(forget_bias=0.0, kernel=kernel),
        "gru": seqjax.gru,
    }
    return known[name]() if name in known else cell_by_name(name)


def _jax_loss(spec: dict[str, Any], shape: Shape, xs):
    """``(loss(params, xs), params)`` of a seqjax, Flax or jax_rnn spec, parameters in the spec's dtype (``xs``
    is already in it); the loss is float32."""
    import jax
    import jax.numpy as jnp

    from seqjax import precision

    key = jax.random.key(SEED)
    dtype = jnp.dtype(spec.get("dtype", "float32"))
    if spec["impl"] == "seqjax":
        import seqjax

        cell = seqjax_cell(spec["cell"], spec.get("kernel", "auto"))
        params = precision.cast_floating(cell.init_params(key, shape.input_size, shape.hidden), dtype)

        def loss(params, xs):
            outputs = seqjax.unroll(cell, params, xs, unroll=spec["unroll"], fused=spec["fused"]).outputs  # [b, t, h]
            return jnp.mean(jnp.square(outputs.astype(jnp.float32)))

        return loss, params

    if spec["impl"] == "jax_rnn":
        from jax.experimental import rnn

        lstm_params = seqjax_cell("lstm").init_params(key, shape.input_size, shape.hidden)  # the seqjax row's LSTM
        weights = cudnn_lstm_weights(lstm_params).astype(dtype)

        def loss(weights, xs):
            batch, time = xs.shape[:2]
            zeros = jnp.zeros((1, batch, shape.hidden), xs.dtype)  # [layers * directions, b, h]
            lengths = jnp.full((batch,), time, jnp.int32)
            sizes = {"input_size": shape.input_size, "hidden_size": shape.hidden, "num_layers": 1}
            outputs, _, _ = rnn.lstm(xs, zeros, zeros, weights, lengths, **sizes, dropout=0.0, bidirectional=False)
            return jnp.mean(jnp.square(outputs.astype(jnp.float32)))

        return loss, weights

    from flax import linen as nn

    cell_class = getattr(nn, spec["variant"])
    # Initialised in float32 and cast: Flax's orthogonal initialiser takes a QR, which has no bfloat16 on CPU.
    params = nn.RNN(cell_class(features=shape.hidden)).init(key, xs.astype(jnp.float32))["params"]
    if dtype == jnp.float32:
        model = nn.RNN(cell_class(features=shape.hidden))
    else:
        model = nn.RNN(cell_class(features=shape.hidden, dtype=dtype, param_dtype=dtype))
        params = precision.cast_floating(params, dtype)

    def loss(params, xs):
        return jnp.mean(jnp.square(model.apply({"params": params}, xs).astype(jnp.float32)))

    return loss, params


def measure_jax(spec: dict[str, Any]) -> dict[str, Any]:
    import jax

    shape = parse_shape(spec["shape"])
    device = jax.devices()[0]
    if spec["impl"] == "jax_rnn" and device.platform != "gpu":  # jax.experimental.rnn lowers to cuDNN only
        return {"status": "skipped", "reason": JAX_RNN_NEEDS_GPU.format(platform=device.platform)}
    xs = jax.device_put(inputs(shape), device).astype(spec.get("dtype", "float32"))
    loss, params = _jax_loss(spec, shape, xs)
    train_step = jax.jit(jax.value_and_grad(loss))
    rss_before = _max_rss_mib()
    first, times = time_steps(
        lambda: train_step(params, xs), jax.block_until_ready, spec["steps"], spec["warmup"], spec["budget_s"]
    )
    value, _ = train_step(params, xs)
    if device.platform == "cpu":
        peak_mib, memory = _max_rss_mib(), "max RSS"
    else:
        peak_mib, memory = device.memory_stats()["peak_bytes_in_use"] / 2**20, "device peak_bytes_in_use"
    return {
        "first_call_s": first,
        "step_times_s": times,
        "loss": float(value),
        "peak_mib": peak_mib,
        "rss_before_steps_mib": rss_before,
        "memory": memory,
        "platform": device.platform,
        "device": f"{device.platform}:{device.device_kind}",
        "framework_version": jax.__version__,
        "is_default": _is_unroll_default(spec, shape),
    }


def _is_unroll_default(spec: dict[str, Any], shape: Shape) -> bool:
    """Whether a seqjax spec is the path ``unroll`` takes with no options at this shape on the default backend."""
    import jax.numpy as jnp

    from seqjax.scan import default_is_fused

    if spec["impl"] != "seqjax":
        return False
    cell = seqjax_cell(spec["cell"])
    dtype = jnp.dtype(spec.get("dtype", "float32"))
    fused = default_is_fused(cell, shape.batch, shape.time, shape.input_size, shape.hidden, dtype)
    return spec["fused"] == fused and spec["unroll"] == 1 and spec.get("kernel", "auto") == "auto"


def measure_torch(spec: dict[str, Any]) -> dict[str, Any]:
    if importlib.util.find_spec("torch") is None:
        return {"status": "skipped", "reason": TORCH_MISSING}
    import torch

    torch.set_num_threads(cpu_count())
    torch.manual_seed(SEED)
    shape = parse_shape(spec["shape"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module_class = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[spec["cell"]]
    kwargs = {"nonlinearity": "tanh"} if spec["cell"] == "rnn" else {}
    dtype = getattr(torch, spec.get("dtype", "float32"))
    module = module_class(shape.input_size, shape.hidden, batch_first=True, **kwargs).to(device=device, dtype=dtype)
    xs = torch.from_numpy(inputs(shape)).to(device=device, dtype=dtype)

    def step():
        module.zero_grad(set_to_none=True)
        outputs, _ = module(xs)  # [b, t, h]
        loss = outputs.float().square().mean()
        loss.backward()
        return loss

    def sync(loss):
        if device.type == "cuda":
            torch.cuda.synchronize()
        return loss

    rss_before = _max_rss_mib()
    first, times = time_steps(step, sync, spec["steps"], spec["warmup"], spec["budget_s"])
    if device.type == "cuda":
        peak_mib, memory = torch.cuda.max_memory_allocated() / 2**20, "torch.cuda.max_memory_allocated"
        name = f"cuda:{torch.cuda.get_device_name()}"
    else:
        peak_mib, memory, name = _max_rss_mib(), "max RSS", "cpu"
    return {
        "first_call_s": first,
        "step_times_s": times,
        "loss": float(step().item()),
        "peak_mib": peak_mib,
        "rss_before_steps_mib": rss_before,
        "memory": memory,
        "platform": device.type,
        "device": name,
        "framework_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


PEAK_SIZE_DEFAULT = 2048


def measure_matmul_peak(spec: dict[str, Any]) -> dict[str, Any]:
    """GFLOP/s of an N x N x N product in ``spec["dtype"]`` (float32 if absent), the best of ``steps`` calls, in
    JAX or torch."""
    n = spec["size"]
    dtype = spec.get("dtype", "float32")
    if spec["framework"] == "torch":
        if importlib.util.find_spec("torch") is None:
            return {"status": "skipped", "reason": TORCH_MISSING}
        import torch

        torch.set_num_threads(cpu_count())
        a = torch.randn(n, n, device="cuda" if torch.cuda.is_available() else "cpu", dtype=getattr(torch, dtype))

        def sync(c):
            if a.is_cuda:
                torch.cuda.synchronize()
            return c

        _, times = time_steps(lambda: a @ a, sync, spec["steps"], 2)
    else:
        import jax
        import jax.numpy as jnp

        a = jax.random.normal(jax.random.key(SEED), (n, n), jnp.dtype(dtype))
        matmul = jax.jit(lambda a: a @ a)
        _, times = time_steps(lambda: matmul(a), jax.block_until_ready, spec["steps"], 2)
    return {"status": "ok", "gflops_per_s": 2 * n**3 / min(times) / 1e9}


def matmul_peak(
    frameworks: Sequence[str],
    run: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    size: int = PEAK_SIZE_DEFAULT,
    dtype: str = "float32",
) -> dict:
    """``{"jax": GFLOP/s, "torch": GFLOP/s or None, "peak": the larger}`` of ``dtype`` products, measured in
    subprocesses."""
    run = run or run_in_subprocess
    found = {}
    for framework in frameworks:
        spec = {"impl": "matmul", "framework": framework, "size": size, "steps": 10, "label": "peak", "dtype": dtype}
        row = run(spec)
        found[framework] = row["gflops_per_s"] if row.get("status") == "ok" else None
    measured = [v for v in found.values() if v]
    return {**found, "size": size, "dtype": dtype, "peak": max(measured) if measured else None}


def add_peak_fraction(rows: list[dict[str, Any]], peak: float | None) -> list[dict[str, Any]]:
    """Adds ``peak_fraction`` = GFLOP/s / ``peak`` to every measured row (nothing if no peak)."""
    if not peak:
        return rows
    return [
        {**row, "peak_fraction": row["gflops_per_s"] / peak} if row.get("gflops_per_s") is not None else row
        for row in rows
    ]


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs one spec (in this process) and returns its result row: the spec plus timings and derived rates."""
    if spec["impl"] == "matmul":
        return measure_matmul_peak(spec)
    dtype = spec.get("dtype", "float32")
    if spec["impl"] in ("seqjax_lm", "torch_lm"):
        if dtype != "float32":
            return {**spec, "status": "skipped", "reason": LM_FLOAT32_ONLY.format(dtype=dtype)}
        result = measure_lm(spec)
    else:
        try:
            result = measure_torch(spec) if spec["impl"] == "torch" else measure_jax(spec)
        except Exception as e:  # an implementation that has no kernel for the dtype: a note, not a failed run
            if dtype == "float32":
                raise
            result = {"status": "skipped", "reason": dtype_refused(spec, e)}
    row = {**spec, "status": "ok", **result, "jax_version": importlib.metadata.version("jax")}
    return with_rates(row) if row["status"] == "ok" else row


def dtype_refused(spec: dict[str, Any], error: BaseException) -> str:
    """The one-line note of a measurement that failed in a dtype other than float32."""
    lines = str(error).strip().splitlines() or [""]
    message = f"{type(error).__name__}: {lines[0]}"[:200]
    return f"{spec['label']} {spec['cell']} {spec['shape']} refuses {spec['dtype']}: {message}"


def measure_lm(spec: dict[str, Any]) -> dict[str, Any]:
    """A language-model training step (``benchmarks/lm_benchmark.py``), with this worker's peak RSS."""
    import lm_benchmark

    if spec["impl"] == "torch_lm":
        if importlib.util.find_spec("torch") is None:
            return {"status": "skipped", "reason": TORCH_MISSING}
        result = lm_benchmark.measure_torch_lm(spec, time_steps, cpu_count())
    else:
        result = lm_benchmark.measure_seqjax_lm(spec, time_steps)
    return {**result, "peak_mib": _max_rss_mib(), "memory": "max RSS"}


def with_rates(row: dict[str, Any]) -> dict[str, Any]:
    """Adds the median step time over ``row["step_times_s"]``, tokens/s and GFLOP/s."""
    shape = parse_shape(row["shape"])
    median = statistics.median(row["step_times_s"])
    if "preset" in row:
        from lm_benchmark import lm_step_flops

        flops = lm_step_flops(row["preset"])
    else:
        flops = train_step_flops(row["cell"], shape)
    return {
        **row,
        "median_step_s": median,
        "tokens_per_s": shape.batch * shape.time / median,
        "flops_per_step": flops,
        "gflops_per_s": None if flops is None else flops / median / 1e9,
    }


def merge_rounds(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One row from the same spec measured in several rounds (fresh processes).

    The step times of all rounds are pooled (so the median is over every timed step), the compile
    time is the median of the rounds' first calls and the peak memory their maximum. A spec that
    failed in any round is reported as failed.
    """
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        return failed[0]
    times = [t for r in rows for t in r["step_times_s"]]
    merged = {
        **rows[0],
        "step_times_s": times,
        "round_medians_s": [statistics.median(r["step_times_s"]) for r in rows],
        "first_call_s": statistics.median(r["first_call_s"] for r in rows),
        "peak_mib": max(r["peak_mib"] for r in rows),
        "rounds": len(rows),
    }
    return with_rates(merged)


# ----------------------------------------------------------------------------------------------------------------------
# The parent: one subprocess per spec, then ratios and tables.


def run_in_subprocess(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs ``spec`` in a fresh Python process (this module as ``__main__``); its last stdout line is the row."""
    command = [sys.executable, __file__, json.dumps(spec)]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            pass
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {**spec, "status": "error", "reason": f"worker exited with {proc.returncode}: {tail}"}


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adds ``vs_best_flax``, ``vs_torch`` and ``vs_jax_rnn``: throughput / the reference's throughput at the same
    cell, shape and dtype.

    The Flax reference is the fastest Flax variant of that cell and shape; a ratio > 1 means faster than it.
    ``None`` where the reference was not measured.
    """
    best_flax: dict[tuple[str, str, str], float] = {}
    torch: dict[tuple[str, str, str], float] = {}
    jax_rnn: dict[tuple[str, str, str], float] = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        group = (row["cell"], row["shape"], row.get("dtype", "float32"))
        if row["impl"] == "flax":
            best_flax[group] = max(best_flax.get(group, 0.0), row["tokens_per_s"])
        if row["impl"] in ("torch", "torch_lm"):
            torch[group] = row["tokens_per_s"]
        if row["impl"] == "jax_rnn":
            jax_rnn[group] = row["tokens_per_s"]
    out = []
    for row in rows:
        row = dict(row)
        if row["status"] == "ok":
            group = (row["cell"], row["shape"], row.get("dtype", "float32"))
            row["vs_best_flax"] = row["tokens_per_s"] / best_flax[group] if group in best_flax else None
            row["vs_torch"] = row["tokens_per_s"] / torch[group] if group in torch else None
            row["vs_jax_rnn"] = row["tokens_per_s"] / jax_rnn[group] if group in jax_rnn else None
        out.append(row)
    return out


def notes_for(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One line per skipped kind or failed measurement, without repeats."""
    notes = []
    for row in rows:
        if row["status"] == "skipped":
            note = row["reason"]
        elif row["status"] == "error":
            note = f"{row['label']} {row['cell']} {row['shape']} failed: {row['reason']}"
        else:
            continue
        if note not in notes:
            notes.append(note)
    return notes


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The markdown table of ratio-annotated rows (see ``add_ratios``), in the rows' order, plus notes."""
    measured = [row for row in rows if row["status"] == "ok"]
    with_torch = any(row["impl"] in ("torch", "torch_lm") for row in measured)
    with_jax_rnn = any(row["impl"] == "jax_rnn" for row in measured)
    with_peak = any("peak_fraction" in row for row in measured)
    with_dtype = any("dtype" in row for row in measured)  # every row of benchmark.py's specs has one
    header = ["cell", "B x T x H", *(["dtype"] if with_dtype else []), "impl", "tokens/s", "GFLOP/s"]
    header += ["% matmul peak"] if with_peak else []
    header += ["compile s", "peak MiB", "vs best flax"]
    header += ["vs torch"] if with_torch else []
    header += ["vs jax_rnn"] if with_jax_rnn else []
    left = 4 if with_dtype else 3
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * left + ["---:"] * (len(header) - left)) + "|"]
    for row in measured:
        cells = [
            row["cell"],
            row["shape"],
            *([row.get("dtype", "float32")] if with_dtype else []),
            row["label"] + (" *" if row.get("is_default") else ""),
            f"{row['tokens_per_s']:,.0f}",
            "-" if row["gflops_per_s"] is None else f"{row['gflops_per_s']:.2f}",
            *([f"{100 * row['peak_fraction']:.0f}%" if "peak_fraction" in row else "-"] if with_peak else []),
            f"{row['first_call_s']:.2f}",
            f"{row['peak_mib']:.0f}",
            _ratio(row["vs_best_flax"]),
        ]
        cells += [_ratio(row["vs_torch"])] if with_torch else []
        cells += [_ratio(row.get("vs_jax_rnn"))] if with_jax_rnn else []
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "tokens/s = B*T / median step time; GFLOP/s from the analytic count 6*B*T*(D+H)*G*H (G = 1, 4, 3 for "
        "rnn, lstm, gru; lm rows: benchmarks/lm_benchmark.py.lm_step_flops); % matmul peak = GFLOP/s / "
        "the best measured N^3 product in the run's dtype (JAX or torch; N = --peak_size, 2048 by default); "
        "compile s = first call (for torch: the first, eager step); vs = tokens/s ratio, > 1 is faster than the "
        "fastest Flax variant (or torch, or jax.experimental.rnn) at the same cell, shape and dtype; * = the path "
        "seqjax.unroll takes by default here (seqjax.scan.takes_fused)."
    )
    lines += [f"- {note}" for note in notes_for(rows)]
    user_cells = dict.fromkeys(row["cell"] for row in rows if "preset" not in row and row["cell"] not in KNOWN_CELLS)
    lines += [f"- {USER_CELLS.format(cells=', '.join(user_cells))}"] if user_cells else []
    return "\n".join(lines) + "\n"


def metadata(argv: Sequence[str], flag_values: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    versions = {}
    for package in ("jax", "jaxlib", "flax", "torch"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "hostname": socket.gethostname(),
        "cpu_count": cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "devices": sorted({row["device"] for row in rows if row["status"] == "ok"}),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *argv]),
        "flags": flag_values,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def format_report(meta: dict[str, Any], table: str) -> str:
    """results.md: what was run, where, and the table."""
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
    return (
        "# seqjax training-step benchmark\n\n"
        f"- command: `{meta['command']}`\n"
        f"- host: {meta['hostname']}, {meta['cpu_count']} CPUs ({meta['cpu_model']}), {meta['platform']}\n"
        f"- devices: {', '.join(meta['devices']) or 'none'}; {versions}; {meta['date']}\n"
        f"- {_dtype_line(meta['flags'].get('dtype', 'float32'))}, gradient w.r.t. all parameters; D = H; median "
        f"of up to {meta['flags']['steps']} steps after up to {meta['flags']['warmup']} warm-up steps (fewer, but at "
        f"least {MIN_TIMED_STEPS} timed, once a measurement has run {meta['flags'].get('budget_s', 'inf')} s)\n"
        + _peak_line(meta.get("matmul_peak_gflops") or {})
        + "\n"
        + table
    )


def _dtype_line(dtype: str) -> str:
    if dtype == "float32":
        return "float32, loss = mean(y**2) over all steps"
    return (
        f"{dtype} parameters and inputs (products on {dtype} operands; seqjax sums and keeps its carry in "
        f"float32, Flax keeps its carry in {dtype}), loss = mean(y**2) over all steps in float32"
    )


def _peak_line(peak: dict[str, Any]) -> str:
    if not peak.get("peak"):
        return ""
    found = ", ".join(f"{k} {v:.1f}" for k, v in peak.items() if k in ("jax", "torch") and v)
    dtype = peak.get("dtype", "float32")
    return f"- matmul peak: {peak['peak']:.1f} GFLOP/s ({dtype} {peak['size']}^3 product, best of 10; {found})\n"


def run_benchmark(
    specs: Sequence[dict[str, Any]],
    run: Callable[[dict[str, Any]], dict[str, Any]] = run_in_subprocess,
    rounds: int = 1,
) -> list[dict[str, Any]]:
    """Runs every spec once per round, one after the other (never concurrently: they would share the CPUs).

    Interleaving the rounds (all specs, then all specs again) spreads slow drifts of the machine over
    every implementation instead of charging them to whichever ran during the drift.
    """
    measured: list[list[dict[str, Any]]] = [[] for _ in specs]
    for round_index in range(rounds):
        for spec, results in zip(specs, measured, strict=True):
            row = run(spec)
            if row["status"] == "ok":
                logging.info(
                    "round %d: %s %s %s: %.0f tokens/s, compile %.2f s",
                    round_index + 1,
                    row["cell"],
                    row["shape"],
                    row["label"],
                    row["tokens_per_s"],
                    row["first_call_s"],
                )
            else:
                logging.warning("%s %s %s: %s", spec["cell"], spec["shape"], spec["label"], notes_for([row])[0])
            results.append(row)
    return add_ratios([merge_rounds(results) for results in measured])


def write_results(workdir: str | os.PathLike, meta: dict[str, Any], rows: Sequence[dict[str, Any]], report: str):
    """Creates ``workdir`` if needed and writes results.json and results.md into it (nothing else)."""
    path = workdir_lib.prepare(workdir)
    workdir_lib.write_atomic(
        path / RESULTS_JSON, json.dumps({"metadata": meta, "results": list(rows)}, indent=2) + "\n"
    )
    workdir_lib.write_atomic(path / RESULTS_MD, report)
    return path / RESULTS_JSON, path / RESULTS_MD


def positive_ints(values: Sequence[str]) -> bool:
    """A non-empty list of integers >= 1 (as absl's list flags give them, strings): a flag validator."""
    return bool(values) and all(v.strip().isdigit() and int(v) >= 1 for v in values)


def valid_shape(text: str) -> bool:
    """``BxTxH`` with positive integers, e.g. ``32x128x256``: a flag validator."""
    return positive_ints(text.split("x")) and len(text.split("x")) == 3


def known_cells(names: Sequence[str]) -> bool:
    """Every name builds a cell (``seqjax.cells.cell_by_name``: built-in, or a user's ``file.py:attr`` or
    ``module:attr``); otherwise an ``absl.flags.ValidationError`` listing the known cells."""
    if not names:
        raise flags.ValidationError("name at least one cell")
    for name in names:
        known_cell(name)
    return True


def known_cell(name: str) -> bool:
    """``known_cells`` of one name: the validator of a script that measures one cell."""
    from seqjax.cells import cell_by_name

    try:
        cell_by_name(name)
    except ValueError as e:
        raise flags.ValidationError(str(e)) from e
    return True


def sibling_experiments() -> None:
    """Puts ``experiments/`` on ``sys.path``: the benchmarks time the experiments' own steps (language_model.py)."""
    path = str(Path(__file__).resolve().parents[1] / "experiments")
    if path not in sys.path:
        sys.path.insert(0, path)


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))), flush=True)
