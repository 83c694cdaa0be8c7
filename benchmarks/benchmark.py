r"""Training-step throughput, seqjax vs Flax linen vs PyTorch (vs jax.experimental.rnn on a GPU); see harness.py.

    python benchmarks/benchmark.py --workdir=runs/benchmark --rounds=3
    python benchmarks/benchmark.py --cell=lstm --shapes=64x256x512 --impls=seqjax,flax --workdir=runs/bench_lstm
    python benchmarks/benchmark.py --cell=lstm,gru --dtype=bfloat16 --lm_presets= --workdir=runs/bench_bf16
    python benchmarks/benchmark.py --cell=lstm,examples/my_cells.py:indrnn --lm_presets= --workdir=runs/bench_mine

Prints a markdown table and writes results.json and results.md into --workdir (nothing else).
"""

import sys
import time

import lm_benchmark
from absl import app, flags
from harness import (
    DTYPES,
    KNOWN_CELLS,
    KNOWN_IMPLS,
    PEAK_SIZE_DEFAULT,
    add_peak_fraction,
    build_specs,
    check_names,
    check_shapes,
    check_unrolls,
    format_report,
    format_table,
    known_cells,
    matmul_peak,
    metadata,
    parse_shape,
    parse_unrolls,
    run_benchmark,
    write_results,
)

from seqjax import command_line, workdir

WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output directory for results.json and results.md (created if missing).", required=True
)
CELLS = flags.DEFINE_list(
    "cells",
    list(KNOWN_CELLS),
    f"Cells to measure: {', '.join(KNOWN_CELLS)} (against Flax and PyTorch), any other seqjax cell or your own "
    "(file.py:attr or module:attr; seqjax rows only); or empty (only --lm_presets). --cell is the same flag.",
)
flags.DEFINE_alias("cell", "cells")
SHAPES = flags.DEFINE_list(
    "shapes",
    ["32x128x256", "64x64x512", "16x100x128", "128x256x1024"],
    "Shapes BxTxH (batch x time x hidden; input size D = H).",
)
IMPLS = flags.DEFINE_list("impls", list(KNOWN_IMPLS), f"Implementations: any of {', '.join(KNOWN_IMPLS)}.")
STEPS = flags.DEFINE_integer(
    "steps", 20, "Timed training steps per measurement (the median is reported).", lower_bound=1
)
WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps after the first (compiling) call.", lower_bound=0)
ROUNDS = flags.DEFINE_integer(
    "rounds", 3, "Interleaved rounds: every measurement is repeated this many times in fresh processes.", lower_bound=1
)
SEQJAX_UNROLLS = flags.DEFINE_list(
    "seqjax_unrolls", ["1", "4"], "lax.scan unroll factors: one 'seqjax scan' row each (besides 'seqjax fused')."
)
BUDGET_S = flags.DEFINE_float(
    "budget_s", 60.0, "Seconds per measurement after compiling; then at least 3 steps are timed.", lower_bound=0.0
)
LM_PRESETS = flags.DEFINE_list(
    "lm_presets",
    ["zaremba_small"],
    "language_model.py presets whose training step is measured too (seqjax and torch); "
    f"any of {', '.join(lm_benchmark.LM_PRESETS)}, or empty.",
)
DTYPE = flags.DEFINE_enum(
    "dtype",
    "float32",
    DTYPES,
    "Dtype of every implementation's parameters and inputs (bfloat16: products in bfloat16, loss in float32; "
    "see harness.py). Language-model rows are float32 only.",
)
PEAK = flags.DEFINE_bool("peak", True, "Measure the matmul peak in --dtype (JAX, and torch if installed).")
PEAK_SIZE = flags.DEFINE_integer(
    "peak_size", PEAK_SIZE_DEFAULT, "N of the N x N x N product that measures the matmul peak.", lower_bound=1
)

flags.register_validator(CELLS, lambda v: known_cells(v) if v else True)
flags.register_validator(IMPLS, lambda v: check_names(v, KNOWN_IMPLS, "implementation"))
flags.register_validator(SHAPES, check_shapes)
flags.register_validator(SEQJAX_UNROLLS, check_unrolls)
flags.register_validator(LM_PRESETS, lambda v: check_names(v, lm_benchmark.LM_PRESETS, "LM preset") if v else True)
_REPORTED_FLAGS = (
    WORKDIR,
    CELLS,
    SHAPES,
    IMPLS,
    STEPS,
    WARMUP,
    ROUNDS,
    SEQJAX_UNROLLS,
    BUDGET_S,
    LM_PRESETS,
    DTYPE,
    PEAK,
    PEAK_SIZE,
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not CELLS.value and not LM_PRESETS.value:
        raise app.UsageError("nothing to measure: give --cell or --lm_presets (or both)")
    try:  # before minutes of measuring: a foreign --workdir is refused now
        reported = {f.name: f.value for f in _REPORTED_FLAGS}
        fixed = set(reported) - {"workdir"}
        workdir.claim(WORKDIR.value, "benchmark", reported, fixed=fixed, defaults={"dtype": "float32"})
    except workdir.WorkdirError as e:
        raise app.UsageError(str(e)) from e
    start = time.perf_counter()
    specs = build_specs(
        CELLS.value,
        [parse_shape(s) for s in SHAPES.value],
        IMPLS.value,
        parse_unrolls(SEQJAX_UNROLLS.value),
        STEPS.value,
        WARMUP.value,
        BUDGET_S.value,
        dtype=DTYPE.value,
    )
    lm_specs = lm_benchmark.build_lm_specs(LM_PRESETS.value, IMPLS.value, STEPS.value, WARMUP.value, BUDGET_S.value)
    specs += [{**spec, "dtype": DTYPE.value} for spec in lm_specs]  # float32 only: other dtypes skip them
    frameworks = [f for f in ("jax", "torch") if f == "jax" or "torch" in IMPLS.value]
    peak = matmul_peak(frameworks, size=PEAK_SIZE.value, dtype=DTYPE.value) if PEAK.value else {}
    rows = add_peak_fraction(run_benchmark(specs, rounds=ROUNDS.value), peak.get("peak"))
    meta = metadata(sys.argv, {f.name: f.value for f in _REPORTED_FLAGS}, rows)
    meta["matmul_peak_gflops"] = peak
    meta["wall_time_s"] = time.perf_counter() - start
    table = format_table(rows)
    json_path, md_path = write_results(WORKDIR.value, meta, rows, format_report(meta, table))
    print(table, end="")
    print(f"wrote {json_path} and {md_path} ({meta['wall_time_s']:.1f} s)")
    return 1 if any(row["status"] == "error" for row in rows) else 0


if __name__ == "__main__":
    command_line.run(main)
