r"""Per-operation profile of one training step (see seqjax.experiments.profile_step).

    python experiments/profile_step.py --cell=lstm --shape=32x128x256 --workdir=runs/profile_lstm
    python experiments/profile_step.py --cell=lstm --shape=32x128x256 --nofused --workdir=runs/profile_lstm_scan

Writes profile.json (every operation) and profile.md (the top ones) into --workdir.
"""

import os
import sys

# XLA reads its flags once, when its backend starts: ask XLA:CPU to name its operations in traces first.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_enable_xprof_traceme=true".strip()

from absl import app, flags

from seqjax import workdir
from seqjax.cells import BUILTIN_CELLS
from seqjax.experiments import flag_checks
from seqjax.experiments.profile_step import format_table, profile

WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
CELL = flags.DEFINE_enum("cell", "lstm", list(BUILTIN_CELLS), "The cell.")
SHAPE = flags.DEFINE_string("shape", "32x128x256", "BxTxH (input size D = H).")
FUSED = flags.DEFINE_bool("fused", True, "The fused sequence (hand-written VJP) or, with --nofused, the scanned step.")
STEPS = flags.DEFINE_integer("steps", 3, "Profiled steps (after two warm-up calls).", lower_bound=1)
TOP = flags.DEFINE_integer("top", 25, "Operations listed in profile.md.", lower_bound=1)

flags.register_validator("shape", flag_checks.shape, "--shape must be BxTxH with positive integers, e.g. 32x128x256")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    spec = {"cell": CELL.value, "shape": SHAPE.value, "fused": FUSED.value, "steps": STEPS.value}
    try:
        out = workdir.claim(WORKDIR.value, "profile_step", spec)
    except workdir.WorkdirError as e:
        raise app.UsageError(str(e)) from e
    result = profile(spec)
    table = format_table(result, TOP.value)
    workdir.write_json(out / "profile.json", result)
    workdir.write_atomic(out / "profile.md", f"`{' '.join(sys.argv)}`\n\n" + table)
    print(table, end="")


if __name__ == "__main__":
    sys.exit(app.run(main))
