r"""Training-step memory against sequence length, with and without remat (see seqjax.experiments.remat_memory).

    python experiments/remat_memory.py --workdir=runs/remat_memory
    python experiments/remat_memory.py --workdir=runs/remat_small --seq_lens=100,1000 --hidden=64

Writes results.json, results.md and memory.png into --workdir.
"""

import dataclasses
import sys
import time

import numpy as np
from absl import app, flags

from seqjax import plots, workdir
from seqjax.cells import BUILTIN_CELLS
from seqjax.experiments.flag_checks import positive_ints
from seqjax.experiments.remat_memory import MODES, Config, format_table, measure

WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
CELL = flags.DEFINE_enum("cell", "lstm", list(BUILTIN_CELLS), "The cell.")
SEQ_LENS = flags.DEFINE_list("seq_lens", ["1000", "10000", "100000"], "Sequence lengths T.")
HIDDEN = flags.DEFINE_integer("hidden", 256, "Hidden size H (= input size D).", lower_bound=1)
BATCH = flags.DEFINE_integer("batch", 16, "Batch size.", lower_bound=1)
MODES_FLAG = flags.DEFINE_multi_enum("modes", list(MODES), list(MODES), "What the backward pass may store.")
RUN_BELOW_GIB = flags.DEFINE_float(
    "run_below_gib", 4.0, "Also run the steps whose XLA temporaries are below this many GiB.", lower_bound=0.0
)

flags.register_validator("seq_lens", positive_ints, "--seq_lens must be a list of positive integers")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = Config(
        cell=CELL.value,
        seq_lens=tuple(int(v) for v in SEQ_LENS.value),
        hidden=HIDDEN.value,
        batch=BATCH.value,
        modes=tuple(MODES_FLAG.value),
        run_below_gib=RUN_BELOW_GIB.value,
    )
    try:
        out = workdir.claim(WORKDIR.value, "remat_memory", dataclasses.asdict(config))
    except workdir.WorkdirError as e:
        raise app.UsageError(str(e)) from e
    started = time.perf_counter()
    rows = measure(config)
    table = format_table(rows)
    workdir.write_json(out / "results.json", {"config": dataclasses.asdict(config), "results": rows})
    workdir.write_atomic(
        out / "results.md",
        f"# Training-step memory vs T ({config.cell}, B={config.batch}, H=D={config.hidden}, many-to-one loss)\n\n"
        f"- command: `{' '.join(sys.argv)}`\n- wall time {time.perf_counter() - started:.0f} s\n\n" + table,
    )
    curves = []
    for mode in config.modes:
        measured = [r for r in rows if r["mode"] == mode and "temp_mib" in r]
        x = np.array([r["seq_len"] for r in measured])
        curves.append(plots.Curve(mode, x, np.array([r["temp_mib"] for r in measured]), mode, "-o"))
    plots.memory_figure(curves, out / "memory.png")
    print(table, end="")
    print(f"wrote results.json, results.md and memory.png into {out}")


if __name__ == "__main__":
    sys.exit(app.run(main))
