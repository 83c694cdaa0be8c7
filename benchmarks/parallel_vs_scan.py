r"""Associative scan vs step-by-step scan for recurrences linear in the carry, alternating in one process.

    python benchmarks/parallel_vs_scan.py --workdir=runs/parallel_vs_scan \
        --shapes=8x256x64,8x1024x64,8x4096x64,32x256x256,32x1024x256,32x4096x256

Writes results.json and results.md into --workdir and prints the table.

For each cell linear in its carry (minGRU, minLSTM) and shape B x T x H (input size D = H), both training steps
of ``unroll`` (loss = mean of the squared outputs, gradient w.r.t. the parameters, ``jax.jit``) are compiled:
``parallel=True``, ``jax.lax.associative_scan`` over the coefficients, and ``parallel=False``, ``jax.lax.scan``
over the steps. They are then timed alternately, ``steps`` times each. The ratio ``scan_s / parallel_s`` > 1
means the associative scan is faster; ``default`` is what ``seqjax.scan.parallel_by_default`` picks there.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from absl import app, flags
from harness import alternate_medians, inputs, known_cells, parse_shape, valid_shape

from seqjax import command_line, workdir
from seqjax.cells import cell_by_name
from seqjax.scan import parallel_by_default, unroll

SEED = 0


def _train_step(cell, parallel: bool):
    def loss(params, xs):
        return jnp.mean(jnp.square(unroll(cell, params, xs, parallel=parallel).outputs))

    return jax.jit(jax.value_and_grad(loss))


def compare(cell_name: str, shape_text: str, steps: int) -> dict[str, Any]:
    """One row: the median step time of each path over ``steps`` alternating calls, after two warm-up calls."""
    shape = parse_shape(shape_text)
    cell = cell_by_name(cell_name)
    params = cell.init_params(jax.random.key(SEED), shape.input_size, shape.hidden)
    xs = jnp.asarray(inputs(shape))
    steps_by_path = {"parallel": _train_step(cell, True), "scan": _train_step(cell, False)}
    medians = alternate_medians(
        {name: functools.partial(step, params, xs) for name, step in steps_by_path.items()}, steps
    )
    parallel_s, scan_s = medians["parallel"], medians["scan"]
    default = parallel_by_default(shape.time, shape.batch, shape.hidden, jax.default_backend())
    return {
        "cell": cell_name,
        "shape": shape_text,
        "parallel_s": parallel_s,
        "scan_s": scan_s,
        "scan_over_parallel": scan_s / parallel_s,
        "default": "parallel" if default else "scan",
        "platform": jax.default_backend(),
    }


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = "| cell | B x T x H | associative ms | scan ms | scan / associative | unroll's default |"
    lines = [header, "|---|---|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['shape']} | {1e3 * r['parallel_s']:.1f} | {1e3 * r['scan_s']:.1f} | "
            f"{r['scan_over_parallel']:.2f} | {r['default']} |"
        )
    return "\n".join(lines) + "\n"


WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
CELLS = flags.DEFINE_list("cells", ["mingru", "minlstm"], "Cells linear in their carry.")
SHAPES = flags.DEFINE_list("shapes", ["8x256x64", "8x1024x64", "32x1024x256"], "BxTxH shapes (input size D = H).")
STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per path (alternating), after two warm-up calls.", lower_bound=1)

flags.register_validator("cells", known_cells)
flags.register_validator(
    "cells",
    lambda names: all(cell_by_name(name).linear is not None for name in names),
    "--cells must name cells linear in their carry (mingru, minlstm)",
)
flags.register_validator(
    "shapes",
    lambda values: bool(values) and all(valid_shape(v) for v in values),
    "--shapes must be BxTxH with positive integers, e.g. 8x1024x64",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = {"cells": CELLS.value, "shapes": SHAPES.value, "steps": STEPS.value}
    out = workdir.claim(WORKDIR.value, "parallel_vs_scan", config, fixed=tuple(config))
    rows = []
    for shape in SHAPES.value:
        for cell in CELLS.value:
            rows.append(compare(cell, shape, STEPS.value))
            print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    table = format_table(rows)
    workdir.write_json(out / "results.json", {"flags": config, "results": rows})
    workdir.write_atomic(out / "results.md", f"`{' '.join(sys.argv)}`\n\n" + table)
    print(table, end="")


if __name__ == "__main__":
    command_line.run(main)
