r"""Parallel-in-time evaluation vs the step-by-step scan, alternating in one process.

    python benchmarks/parallel_vs_scan.py --workdir=runs/parallel_vs_scan \
        --shapes=8x256x64,8x1024x64,8x4096x64,32x256x256,32x1024x256,32x4096x256
    python benchmarks/parallel_vs_scan.py --workdir=runs/deer_vs_scan --cell=rnn,gru --shapes=8x256x16

Writes results.json and results.md into --workdir and prints the table.

For each cell and shape B x T x H (input size D = H), training steps (loss = mean of the squared outputs, gradient
w.r.t. the parameters, ``jax.jit``) are compiled and then timed alternately, ``steps`` times each:

- a cell linear in its carry (minGRU, minLSTM): ``unroll(parallel=True)``, ``jax.lax.associative_scan`` over the
  coefficients, against ``unroll(parallel=False)``, ``jax.lax.scan`` over the steps;
- any other cell: ``seqjax.deer.unroll`` with the full Jacobian (DEER) and with its diagonal (quasi-DEER), with the
  Newton iterations each took, against ``seqjax.scan.unroll`` as it runs by default (the fused sequence where it
  applies and is faster, ``seqjax.scan.fused_by_default``).

``scan_over_parallel`` = ``scan_s / parallel_s`` > 1 means the parallel path is faster (for DEER: the faster of its
two modes); ``default`` is what ``unroll`` picks there.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from absl import app, flags
from harness import alternate_medians, compare_grid, inputs, known_cells, parse_shape, valid_shape

from seqjax import command_line, deer
from seqjax.cells import cell_by_name
from seqjax.scan import fused_by_default, parallel_by_default, unroll

SEED = 0


def _train_step(cell, parallel: bool):
    def loss(params, xs):
        return jnp.mean(jnp.square(unroll(cell, params, xs, parallel=parallel).outputs))

    return jax.jit(jax.value_and_grad(loss))


def _deer_train_step(cell, jacobian: str):
    """The training step by ``seqjax.deer.unroll``; its value carries the iterations taken and whether it converged."""

    def loss(params, xs):
        result = deer.unroll(cell, params, xs, jacobian=jacobian)
        return jnp.mean(jnp.square(result.outputs)), (result.iterations, result.converged)

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


def _iterations(step, params, xs) -> dict[str, Any]:
    (_, (iterations, converged)), _ = step(params, xs)
    return {"iterations": int(iterations), "converged": bool(converged)}


def compare(cell_name: str, shape_text: str, steps: int) -> dict[str, Any]:
    """One row: the median step time of each path over ``steps`` alternating calls, after two warm-up calls."""
    shape = parse_shape(shape_text)
    cell = cell_by_name(cell_name)
    params = cell.init_params(jax.random.key(SEED), shape.input_size, shape.hidden)
    xs = jnp.asarray(inputs(shape))
    platform = jax.default_backend()
    if cell.linear is not None:
        steps_by_path = {"associative": _train_step(cell, True), "scan": _train_step(cell, False)}
        default = parallel_by_default(shape.time, shape.batch, shape.hidden, platform)
        default_path = "parallel" if default else "scan"
    else:
        steps_by_path = {f"deer_{mode}": _deer_train_step(cell, mode) for mode in deer.JACOBIANS}
        steps_by_path["scan"] = _train_step(cell, False)
        default_path = (
            "fused" if cell.fused is not None and fused_by_default(shape.batch, shape.hidden, platform) else "scan"
        )
    medians = alternate_medians(
        {name: functools.partial(step, params, xs) for name, step in steps_by_path.items()}, steps
    )
    row = {"cell": cell_name, "shape": shape_text, "associative_s": None, "scan_s": medians["scan"]}
    for mode in deer.JACOBIANS:
        row[f"deer_{mode}_s"] = medians.get(f"deer_{mode}")
        name = f"deer_{mode}"
        row[f"deer_{mode}"] = _iterations(steps_by_path[name], params, xs) if name in steps_by_path else None
    if cell.linear is not None:
        row["associative_s"] = medians["associative"]
        parallel = "associative"
    else:
        parallel = min((f"deer_{mode}" for mode in deer.JACOBIANS), key=medians.__getitem__)
    row.update(
        parallel=parallel,
        parallel_s=medians[parallel],
        scan_over_parallel=medians["scan"] / medians[parallel],
        default=default_path,
        platform=platform,
    )
    return row


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1e3 * seconds:.1f}"


def _deer_cell(row: dict[str, Any], mode: str) -> str:
    """``ms (iterations)``, marked when the iteration did not converge; ``-`` for a linear cell."""
    found = row[f"deer_{mode}"]
    if found is None:
        return "-"
    mark = "" if found["converged"] else ", not converged"
    return f"{_ms(row[f'deer_{mode}_s'])} ({found['iterations']}{mark})"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = (
        "| cell | B x T x H | associative ms | DEER ms (iterations) | quasi-DEER ms (iterations) | scan ms | "
        "scan / parallel | unroll's default |"
    )
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['shape']} | {_ms(r['associative_s'])} | {_deer_cell(r, 'full')} | "
            f"{_deer_cell(r, 'diagonal')} | {_ms(r['scan_s'])} | {r['scan_over_parallel']:.2f} | {r['default']} |"
        )
    return "\n".join(lines) + "\n"


WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
CELLS = flags.DEFINE_list(
    "cells",
    ["mingru", "minlstm"],
    "Cells: linear in their carry (associative scan) or any other (DEER); built-in or your own (file.py:attr or "
    "module:attr). --cell is the same flag.",
)
flags.DEFINE_alias("cell", "cells")
SHAPES = flags.DEFINE_list("shapes", ["8x256x64", "8x1024x64", "32x1024x256"], "BxTxH shapes (input size D = H).")
STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per path (alternating), after two warm-up calls.", lower_bound=1)

flags.register_validator("cells", known_cells)
flags.register_validator(
    "shapes",
    lambda values: bool(values) and all(valid_shape(v) for v in values),
    "--shapes must be BxTxH with positive integers, e.g. 8x1024x64",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    compare_grid("parallel_vs_scan", WORKDIR.value, CELLS.value, SHAPES.value, STEPS.value, compare, format_table)


if __name__ == "__main__":
    command_line.run(main)
