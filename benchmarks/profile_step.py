r"""Per-operation profile of one training step (see profile_step).

    python benchmarks/profile_step.py --cell=lstm --shape=32x128x256 --workdir=runs/profile_lstm
    python benchmarks/profile_step.py --cell=lstm --shape=32x128x256 --nofused --workdir=runs/profile_lstm_scan
    python benchmarks/profile_step.py --cell=examples/my_cells.py:indrnn --shape=32x128x256 --workdir=runs/profile_mine

Writes profile.json (every operation) and profile.md (the top ones) into --workdir.

Where a training step's time goes: per-HLO-operation times from a JAX profiler trace.

``profile(spec)`` jits the gradient of ``mean(y**2)`` over ``unroll``'s outputs (the benchmark's
step), runs it under ``jax.profiler.trace(create_perfetto_trace=True)`` and sums the duration of
every XLA operation (fusions, dots, copies; on CPU these appear only when the process started with
``XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true``, which ``benchmarks/profile_step.py`` sets) per
step. Operations inside the time loop appear once per time step; ``count`` says how often.
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# XLA reads its flags once, when its backend starts: ask XLA:CPU to name its operations in traces first.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_enable_xprof_traceme=true".strip()

from absl import app, flags
from harness import inputs, known_cell, parse_shape, valid_shape

from seqjax import command_line, workdir
from seqjax.cells import cell_by_name
from seqjax.config import CELL_HELP

# Runtime bookkeeping in the trace, not XLA operations.

_RUNTIME_PREFIXES = (
    "Allocate",
    "Thunk",
    "Threadpool",
    "Pjit",
    "PjRt",
    "CommonPjRt",
    "Slinky",
    "$",
    "end:",
    "Python",
    "Parse",
)


def _train_step(spec: dict[str, Any]):
    import jax
    import jax.numpy as jnp

    from seqjax.cells import cell_by_name
    from seqjax.scan import unroll

    shape = parse_shape(spec["shape"])
    cell = cell_by_name(spec["cell"])
    params = cell.init_params(jax.random.key(0), shape.input_size, shape.hidden)
    xs = jnp.asarray(inputs(shape))  # the benchmark's inputs, passed as an argument (not a compiled constant)

    def loss(params, xs):
        return jnp.mean(jnp.square(unroll(cell, params, xs, fused=spec["fused"]).outputs))

    return jax.jit(jax.grad(loss)), params, xs


def is_operation(name: str) -> bool:
    return not name.startswith(_RUNTIME_PREFIXES) and "::" not in name and " " not in name


def operation_times(events: list[dict], steps: int) -> list[dict[str, Any]]:
    """Complete trace events (``ph == "X"``, durations in us) summed per operation name, per step."""
    total: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and is_operation(event["name"]):
            total[event["name"]] += event.get("dur", 0)
            count[event["name"]] += 1
    return [
        {"op": name, "ms_per_step": us / steps / 1e3, "count_per_step": count[name] // steps}
        for name, us in total.most_common()
    ]


def profile(spec: dict[str, Any]) -> dict[str, Any]:
    """Profiles ``spec["steps"]`` steps after two warm-up calls; returns the step time and operation table."""
    import jax

    step, params, xs = _train_step(spec)
    for _ in range(2):
        jax.block_until_ready(step(params, xs))
    started = time.perf_counter()
    for _ in range(spec["steps"]):
        jax.block_until_ready(step(params, xs))
    step_s = (time.perf_counter() - started) / spec["steps"]
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for _ in range(spec["steps"]):
                jax.block_until_ready(step(params, xs))
        (path,) = Path(trace_dir).rglob("perfetto_trace.json.gz")
        data = json.loads(gzip.decompress(path.read_bytes()))
    events = data["traceEvents"] if isinstance(data, dict) else data
    operations = operation_times(events, spec["steps"])
    return {**spec, "step_ms": step_s * 1e3, "operations": operations}


def format_table(result: dict[str, Any], top: int = 25) -> str:
    ops = result["operations"]
    traced = sum(op["ms_per_step"] for op in ops)
    lines = [
        f"{result['cell']} {result['shape']} fused={result['fused']}: step {result['step_ms']:.1f} ms untraced, "
        f"{traced:.1f} ms in XLA operations while traced",
        "",
        "| operation | ms / step | share | calls / step |",
        "|---|---:|---:|---:|",
    ]
    for op in ops[:top]:
        share = op["ms_per_step"] / traced if traced else 0.0
        lines.append(f"| {op['op']} | {op['ms_per_step']:.2f} | {100 * share:.1f}% | {op['count_per_step']} |")
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    fused = FUSED.value and cell_by_name(CELL.value).fused is not None
    if FUSED.value and not fused and FUSED.present:
        raise app.UsageError(f"--fused: {CELL.value} has no fused sequence; --nofused profiles its scanned step")
    spec = {"cell": CELL.value, "shape": SHAPE.value, "fused": fused, "steps": STEPS.value}
    try:
        out = workdir.claim(WORKDIR.value, "profile_step", spec, fixed=tuple(spec))
    except workdir.WorkdirError as e:
        raise app.UsageError(str(e)) from e
    result = profile(spec)
    table = format_table(result, TOP.value)
    workdir.write_json(out / "profile.json", result)
    workdir.write_atomic(out / "profile.md", f"`{' '.join(sys.argv)}`\n\n" + table)
    print(table, end="")


if __name__ == "__main__":  # the flags exist only when this is the script run: importing it defines none
    WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
    CELL = flags.DEFINE_string("cell", "lstm", CELL_HELP)
    SHAPE = flags.DEFINE_string("shape", "32x128x256", "BxTxH (input size D = H).")
    FUSED = flags.DEFINE_bool(
        "fused",
        True,
        "The fused sequence (hand-written VJP) or, with --nofused, the scanned step (a cell without a fused sequence: "
        "the scanned step).",
    )
    STEPS = flags.DEFINE_integer("steps", 3, "Profiled steps (after two warm-up calls).", lower_bound=1)
    TOP = flags.DEFINE_integer("top", 25, "Operations listed in profile.md.", lower_bound=1)

    flags.register_validator("shape", valid_shape, "--shape must be BxTxH with positive integers, e.g. 32x128x256")
    flags.register_validator("cell", known_cell)
    command_line.run(main)
