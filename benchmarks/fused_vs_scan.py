r"""Fused sequence vs scanned step, alternating in one process (see fused_vs_scan).

    python benchmarks/fused_vs_scan.py --workdir=runs/fused_vs_scan \
        --shapes=16x64x1024,32x64x512,32x64x256,64x64x512,64x64x256,128x64x512

Writes results.json and results.md into --workdir and prints the table.

In-process A/B of ``unroll``'s two paths: the fused sequence against the scanned step.

For each cell and shape B x T x H (input size D = H), both training steps (loss = mean of the squared
outputs, gradient w.r.t. the parameters, ``jax.jit``) are compiled, then timed alternately, ``steps``
times each, so that both see the same machine state. The ratio ``scan_s / fused_s`` > 1 means the
fused sequence is faster; ``default`` is what ``unroll`` picks there (``seqjax.scan.takes_fused``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from absl import app, flags
from harness import alternate_medians, compare_grid, inputs, known_cells, parse_shape, valid_shape

from seqjax import command_line
from seqjax.cells import cell_by_name
from seqjax.scan import default_is_fused, unroll

SEED = 0


def _train_step(cell, fused: bool):
    def loss(params, xs):
        return jnp.mean(jnp.square(unroll(cell, params, xs, fused=fused).outputs))

    return jax.jit(jax.value_and_grad(loss))


def compare(cell_name: str, shape_text: str, steps: int) -> dict[str, Any]:
    """One row: the median step time of each path over ``steps`` alternating calls, after two warm-up calls."""
    shape = parse_shape(shape_text)
    cell = cell_by_name(cell_name)
    params = cell.init_params(jax.random.key(SEED), shape.input_size, shape.hidden)
    xs = jnp.asarray(inputs(shape))
    steps_by_path = {"fused": _train_step(cell, True), "scan": _train_step(cell, False)}
    medians = alternate_medians(
        {name: functools.partial(step, params, xs) for name, step in steps_by_path.items()}, steps
    )
    fused_s, scan_s = medians["fused"], medians["scan"]
    default = default_is_fused(cell, shape.batch, shape.time, shape.input_size, shape.hidden)
    return {
        "cell": cell_name,
        "shape": shape_text,
        "fused_s": fused_s,
        "scan_s": scan_s,
        "scan_over_fused": scan_s / fused_s,
        "default": "fused" if default else "scan",
        "platform": jax.default_backend(),
    }


def with_fused_sequences(names: Sequence[str]) -> bool:
    """--cells' validator: every cell has a fused sequence (there is nothing to compare otherwise)."""
    for name in names:
        if cell_by_name(name).fused is None:
            raise flags.ValidationError(
                f"{name} has no fused sequence to compare with its scanned step; cells with one: rnn, rnn_relu, "
                "lstm, gru"
            )
    return True


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = "| cell | B x T x H | fused ms | scan ms | scan / fused | unroll's default |"
    lines = [header, "|---|---|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['shape']} | {1e3 * r['fused_s']:.1f} | {1e3 * r['scan_s']:.1f} | "
            f"{r['scan_over_fused']:.2f} | {r['default']} |"
        )
    return "\n".join(lines) + "\n"


WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
CELLS = flags.DEFINE_list(
    "cells",
    ["rnn", "lstm", "gru"],
    "Cells with a fused sequence: rnn, rnn_relu, lstm, gru, or your own (file.py:attr or module:attr) if it has one. "
    "--cell is the same flag.",
)
flags.DEFINE_alias("cell", "cells")
SHAPES = flags.DEFINE_list("shapes", ["32x64x256", "64x64x256", "32x64x512"], "BxTxH shapes (input size D = H).")
STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per path (alternating), after two warm-up calls.", lower_bound=1)

flags.register_validator("cells", lambda names: known_cells(names) and with_fused_sequences(names))
flags.register_validator(
    "shapes",
    lambda values: bool(values) and all(valid_shape(v) for v in values),
    "--shapes must be BxTxH with positive integers, e.g. 32x64x256",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    compare_grid("fused_vs_scan", WORKDIR.value, CELLS.value, SHAPES.value, STEPS.value, compare, format_table)


if __name__ == "__main__":
    command_line.run(main)
