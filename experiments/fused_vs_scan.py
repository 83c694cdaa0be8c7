r"""Fused sequence vs scanned step, alternating in one process (see seqjax.experiments.fused_vs_scan).

    python experiments/fused_vs_scan.py --workdir=runs/fused_vs_scan \
        --shapes=16x64x1024,32x64x512,32x64x256,64x64x512,64x64x256,128x64x512

Writes results.json and results.md into --workdir and prints the table.
"""

import sys

from absl import app, flags

from seqjax import workdir
from seqjax.cells import cell_by_name
from seqjax.experiments import flag_checks
from seqjax.experiments.fused_vs_scan import compare, format_table

WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
CELLS = flags.DEFINE_list("cells", ["rnn", "lstm", "gru"], "Cells with a fused sequence.")
SHAPES = flags.DEFINE_list("shapes", ["32x64x256", "64x64x256", "32x64x512"], "BxTxH shapes (input size D = H).")
STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per path (alternating), after two warm-up calls.", lower_bound=1)

flags.register_validator("cells", flag_checks.known_cells)
flags.register_validator(
    "cells",
    lambda names: all(cell_by_name(name).fused is not None for name in names),
    "--cells must name cells with a fused sequence (rnn, rnn_relu, lstm, gru)",
)
flags.register_validator(
    "shapes",
    lambda values: bool(values) and all(flag_checks.shape(v) for v in values),
    "--shapes must be BxTxH with positive integers, e.g. 32x64x256",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = {"cells": CELLS.value, "shapes": SHAPES.value, "steps": STEPS.value}
    try:
        out = workdir.claim(WORKDIR.value, "fused_vs_scan", config)
    except workdir.WorkdirError as e:
        raise app.UsageError(str(e)) from e
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
    sys.exit(app.run(main))
