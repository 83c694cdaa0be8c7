r"""Training-step memory against sequence length, with and without remat (see remat_memory).

    python benchmarks/remat_memory.py --workdir=runs/remat_memory
    python benchmarks/remat_memory.py --workdir=runs/remat_small --seq_lens=100,1000 --hidden=64
    python benchmarks/remat_memory.py --workdir=runs/remat_indrnn --cell=examples/my_cells.py:indrnn

Writes results.json, results.md and memory.png into --workdir.

Memory of one training step against sequence length, with and without rematerialisation.

For each length T and each way of storing the forward pass for the backward one:

    none        every step's residuals (the fused cells: gate activations and carries)
    remat       ``unroll(remat=True)``: only the carries, each step's gates recomputed
    segments    ``unroll(segment_len=k)``, k = ceil(sqrt(T)): the carry entering each of T/k segments,
                one segment recomputed at a time
    both        segments, and remat inside each segment

the step is the gradient of a many-to-one loss (the final hidden state's mean square) w.r.t. the
cell's params, for inputs ``[B, T, D]`` (D = H). XLA's buffer assignment of the compiled step gives
its temporary bytes (activations and workspace), independent of the machine's other allocations;
steps whose temporaries fit under a limit are also run, in a subprocess each, for their wall time
and peak resident memory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np
from absl import app, flags
from harness import known_cell, positive_ints

from seqjax import command_line, plots, workdir
from seqjax.config import CELL_HELP

MODES = ("none", "remat", "segments", "both")


@dataclasses.dataclass(frozen=True)
class Config:
    cell: str = "lstm"
    seq_lens: tuple[int, ...] = (1_000, 10_000, 100_000)
    hidden: int = 256
    batch: int = 16
    modes: tuple[str, ...] = MODES
    run_below_gib: float = 4.0


def segment_len(mode: str, seq_len: int) -> int | None:
    return math.ceil(math.sqrt(seq_len)) if mode in ("segments", "both") else None


def _train_step(spec: dict[str, Any]):
    """The jitted gradient of the spec's step, its params and inputs."""
    import jax
    import jax.numpy as jnp

    from seqjax.cells import cell_by_name
    from seqjax.scan import unroll

    cell = cell_by_name(spec["cell"])
    params = cell.init_params(jax.random.key(0), spec["hidden"], spec["hidden"])
    xs = jax.ShapeDtypeStruct((spec["batch"], spec["seq_len"], spec["hidden"]), jnp.float32)
    remat = spec["mode"] in ("remat", "both")

    def loss(params, xs):
        final = unroll(cell, params, xs, remat=remat, segment_len=segment_len(spec["mode"], spec["seq_len"])).carry
        return jnp.mean(jnp.square(jax.tree.leaves(final)[0]))

    return jax.jit(jax.grad(loss)), params, xs


def compiled_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """XLA's memory analysis of the compiled step: temporary, argument and output bytes."""
    step, params, xs = _train_step(spec)
    started = time.perf_counter()
    analysis = step.lower(params, xs).compile().memory_analysis()
    return {
        "temp_mib": analysis.temp_size_in_bytes / 2**20,
        "argument_mib": analysis.argument_size_in_bytes / 2**20,
        "output_mib": analysis.output_size_in_bytes / 2**20,
        "compile_s": time.perf_counter() - started,
    }


def run_step(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs the step twice (the first compiles) and returns the second's wall time and the peak RSS."""
    import jax
    import jax.numpy as jnp

    step, params, xs_spec = _train_step(spec)
    xs = jax.random.normal(jax.random.key(1), xs_spec.shape, jnp.float32)
    jax.block_until_ready(step(params, xs))
    started = time.perf_counter()
    jax.block_until_ready(step(params, xs))
    return {
        "step_s": time.perf_counter() - started,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,
    }


def _in_subprocess(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    command = [sys.executable, __file__, kind, json.dumps(spec)]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(config: Config, progress: bool = True) -> list[dict[str, Any]]:
    """One row per (length, mode): compiled memory always; the run when its temporaries fit."""
    rows = []
    for seq_len in config.seq_lens:
        for mode in config.modes:
            spec = {"cell": config.cell, "seq_len": seq_len, "mode": mode, "hidden": config.hidden}
            spec["batch"] = config.batch
            row = {**spec, "segment_len": segment_len(mode, seq_len), **_in_subprocess("compile", spec)}
            if "error" not in row and row["temp_mib"] < config.run_below_gib * 1024:
                row.update(_in_subprocess("run", spec))
            if progress:
                ran = f", step {row['step_s']:.2f} s, peak RSS {row['peak_rss_mib']:.0f} MiB" if "step_s" in row else ""
                print(f"T={seq_len} {mode}: temp {row.get('temp_mib', float('nan')):.1f} MiB{ran}", flush=True)
            rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    header = "| T | mode | segment | XLA temp MiB | step s | peak RSS MiB |"
    lines = [header, "|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        step = f"{r['step_s']:.2f}" if "step_s" in r else "not run"
        rss = f"{r['peak_rss_mib']:.0f}" if "peak_rss_mib" in r else "-"
        temp = f"{r['temp_mib']:.1f}" if "temp_mib" in r else r.get("error", "-")
        lines.append(f"| {r['seq_len']} | {r['mode']} | {r['segment_len'] or '-'} | {temp} | {step} | {rss} |")
    return "\n".join(lines) + "\n"


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
        record = dataclasses.asdict(config)
        out = workdir.claim(WORKDIR.value, "remat_memory", record, fixed=tuple(record))
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
    if sys.argv[1:2] in (["compile"], ["run"]):  # a worker process of measure(): one measurement, printed as JSON
        worker = {"compile": compiled_memory, "run": run_step}[sys.argv[1]]
        print(json.dumps(worker(json.loads(sys.argv[2]))), flush=True)
    else:
        WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
        CELL = flags.DEFINE_string("cell", "lstm", CELL_HELP)
        SEQ_LENS = flags.DEFINE_list("seq_lens", ["1000", "10000", "100000"], "Sequence lengths T.")
        HIDDEN = flags.DEFINE_integer("hidden", 256, "Hidden size H (= input size D).", lower_bound=1)
        BATCH = flags.DEFINE_integer("batch", 16, "Batch size.", lower_bound=1)
        MODES_FLAG = flags.DEFINE_multi_enum("modes", list(MODES), list(MODES), "What the backward pass may store.")
        RUN_BELOW_GIB = flags.DEFINE_float(
            "run_below_gib", 4.0, "Also run the steps whose XLA temporaries are below this many GiB.", lower_bound=0.0
        )

        flags.register_validator("seq_lens", positive_ints, "--seq_lens must be a list of positive integers")
        flags.register_validator("cell", known_cell)
        command_line.run(main)
