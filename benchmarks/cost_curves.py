r"""How a training step's cost grows with T, B, H or the vocabulary V, one curve per command.

    python benchmarks/cost_curves.py --sweep=T --workdir=runs/cost_T
    python benchmarks/cost_curves.py --sweep=B --workdir=runs/cost_B
    python benchmarks/cost_curves.py --sweep=H --workdir=runs/cost_H
    python benchmarks/cost_curves.py --sweep=vocab --workdir=runs/cost_vocab

Writes results.json (every point), results.md (a table per curve with its slopes, led by the command) and cost.png
(log-log, one line per curve, its slope in the legend) into --workdir, and prints the tables.

The cell sweeps (``--sweep=T``, ``B`` or ``H``, for each of ``--cell``) time the step the cell benchmark times
(``benchmarks/harness.py``): ``jax.jit(jax.value_and_grad(loss))`` with ``loss = mean(y**2)`` over the outputs of
``seqjax.unroll`` on its default path (no options: the fused sequence where ``seqjax.scan.fused_by_default``
takes it, the scanned step elsewhere; the table's ``path`` column says which), on the benchmark's fixed N(0, 1)
inputs ``[B, T, D]``, D = H. One dimension takes each of ``--sizes``, the other two stay at ``--batch``,
``--length`` and ``--hidden``:

    --sweep=T       T = 64 ... 4096 (doubling) at B = 32, H = 128
    --sweep=B       B = 1 ... 256 (doubling) at T = 128, H = 128
    --sweep=H       H = 32 ... 1024 (doubling) at B = 32, T = 128

``--sweep=vocab`` times the ``--preset``'s own training step from ``experiments/language_model.py``
(``training_step(config, V, steps_per_epoch=8)``: embedding, stacked cell, softmax cross-entropy, clipping and the
optimizer, jitted with the state donated) on random tokens, called as the runner calls an update it does not log,
for V = 1000 ... 100000; ``--batch``, ``--length`` and ``--hidden`` override the preset's batch size, bptt and
hidden size.

Every point is timed in this process: one compiling call, ``--warmup`` untimed calls, then the median of ``--steps``
timed ones (``harness.time_steps``).

Reading the slope: ``slope`` is the least-squares fit of log(step time) against log(size), the k of
``time ~ size^k``. 1 means time grows in proportion to the size (twice the size, twice the time), 2 quadratically,
0 not at all. Below 1, part of each step does not grow with the swept size: dispatch and launch overheads, or the
work in the other dimensions (the stacked cells in a vocab sweep). "upper half" fits only the larger half of the
sizes, where such fixed costs matter less: the better guess of how the curve continues.

What to expect (from operation counts, not measured here): the arithmetic of a step grows in proportion to T, B
and V and to H^2 (per time step the products are O(B H^2); the output layer is O(B T H V)), so where arithmetic
dominates, as on a CPU at the larger sizes, the slopes approach 1 for T, B and V (V: once the output layer
outweighs the cells) and 2 for H; a cell sweep on a CPU may kink
where ``fused_by_default`` switches path. On a GPU the sequential scan is latency-bound in T: each time step
waits for the one before it, so the T slope stays near 1 whatever B and H, while B and H come nearly free
(slopes well below 1) until the matrix products are large enough to fill the device.
"""

from __future__ import annotations

import dataclasses
import io
import shlex
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import app, flags
from harness import SEED, Shape, inputs, known_cells, seqjax_cell, time_steps
from lm_benchmark import LM_PRESETS, lm_config, seqjax_lm_step

from seqjax import command_line, workdir
from seqjax.cells import BUILTIN_CELLS, LINEAR_CELLS

SWEEPS = ("T", "B", "H", "vocab")
DEFAULT_SIZES = {
    "T": (64, 128, 256, 512, 1024, 2048, 4096),
    "B": (1, 2, 4, 8, 16, 32, 64, 128, 256),
    "H": (32, 64, 128, 256, 512, 1024),
    "vocab": (1_000, 3_000, 10_000, 30_000, 100_000),
}
DEFAULT_FIXED = {"batch": 32, "length": 128, "hidden": 128}  # the cell sweeps' fixed dimensions
SWEPT = {"T": "length", "B": "batch", "H": "hidden", "vocab": "vocab"}  # the dimension each sweep varies
AXIS_LABELS = {
    "T": "sequence length T",
    "B": "batch size B",
    "H": "hidden size H (= input size D)",
    "vocab": "vocabulary size V",
}
DEFAULT_CELLS = ("rnn", "lstm", "gru")


# ----------------------------------------------------------------------------------------------------------------------
# The fit.


def loglog_slope(sizes: Sequence[float], times: Sequence[float]) -> float:
    """The least-squares slope k of ``log(time) = k log(size) + c``: the exponent of ``time ~ size^k``.

    Args:
      sizes: at least two distinct positive sizes.
      times: a positive time per size (any unit: the slope does not depend on it).

    Raises:
      ValueError: fewer than two distinct sizes, mismatched lengths, or a value that is not positive.
    """
    x, y = np.asarray(sizes, dtype=np.float64), np.asarray(times, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"expected one time per size, got {x.shape} sizes and {y.shape} times")
    if not (np.all(x > 0) and np.all(y > 0)):
        raise ValueError("sizes and times must be positive to take their logarithms")
    if len(np.unique(x)) < 2:
        raise ValueError("a slope needs at least two distinct sizes")
    log_x, log_y = np.log(x), np.log(y)
    dx = log_x - log_x.mean()
    return float(np.sum(dx * (log_y - log_y.mean())) / np.sum(dx * dx))


def upper_half(sizes: Sequence[int]) -> list[int]:
    """The larger ceil(n/2) of n sizes, or none when that is fewer than two (n = 2: the fit would be all points)."""
    ordered = sorted(sizes)
    half = ordered[len(ordered) // 2 :]
    return half if 2 <= len(half) < len(ordered) else []


def slopes(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``{"all": k, "upper_half": k or None, "upper_half_sizes": [...]}`` of one curve's points (size, step_ms)."""
    sizes = [p["size"] for p in points]
    times = {p["size"]: p["step_ms"] for p in points}
    upper = upper_half(sizes)
    return {
        "all": loglog_slope(sizes, [times[s] for s in sizes]),
        "upper_half": loglog_slope(upper, [times[s] for s in upper]) if upper else None,
        "upper_half_sizes": upper,
    }


# ----------------------------------------------------------------------------------------------------------------------
# What to measure.


@dataclasses.dataclass(frozen=True)
class Sweep:
    """One command's curves: ``curves`` (cells, or the preset) over ``sizes`` of the ``sweep`` dimension."""

    sweep: str
    curves: tuple[str, ...]
    sizes: tuple[int, ...]
    batch: int
    length: int
    hidden: int
    steps: int
    warmup: int

    def dims(self, size: int) -> dict[str, int]:
        """``{"batch", "length", "hidden"}`` (and ``"vocab"`` for the vocab sweep) at one point of the sweep."""
        return {"batch": self.batch, "length": self.length, "hidden": self.hidden, SWEPT[self.sweep]: size}


def cell_step(cell_name: str, batch: int, length: int, hidden: int) -> tuple[Callable[[], Any], str]:
    """The cell benchmark's training step at ``B x T x H`` (D = H) as a function of no arguments, and its path."""
    import jax
    import jax.numpy as jnp

    from seqjax.scan import default_is_fused, unroll

    cell = seqjax_cell(cell_name)  # the cell benchmark's cells (and any other, a user's too)
    shape = Shape(batch, length, hidden)
    params = cell.init_params(jax.random.key(SEED), shape.input_size, shape.hidden)
    xs = jnp.asarray(inputs(shape))  # [b, t, d], an argument (not a compiled constant)

    def loss(params, xs):
        return jnp.mean(jnp.square(unroll(cell, params, xs).outputs))  # unroll's default path

    step = jax.jit(jax.value_and_grad(loss))
    fused = default_is_fused(cell, batch, length, shape.input_size, hidden)
    return (lambda: step(params, xs)), "fused" if fused else f"scan(unroll={cell.unroll})"


def lm_step(preset: str, vocab: int, batch: int, length: int, hidden: int) -> tuple[Callable[[], Any], str]:
    """The preset's training step (``language_model.training_step``) at vocabulary ``vocab``, with its batch size,
    bptt and hidden size set to ``batch``, ``length`` and ``hidden``, as the runner calls an unlogged update (one
    update per call, so the curve shows the step alone)."""
    from language_model import PRESETS, Config, label

    from seqjax import config as config_lib

    sizes = {"batch_size": batch, "bptt": length, "hidden": hidden, "steps_per_call": 1}
    config = config_lib.build(Config, {**PRESETS[preset], **sizes})
    step, _ = seqjax_lm_step(config, vocab)
    return step, label(config)


def measure_point(sweep: Sweep, curve: str, size: int) -> dict[str, Any]:
    """One point: the median of ``sweep.steps`` timed steps after the compiling call and ``sweep.warmup`` more."""
    import jax

    dims = sweep.dims(size)
    if sweep.sweep == "vocab":
        step, path = lm_step(curve, dims["vocab"], dims["batch"], dims["length"], dims["hidden"])
    else:
        step, path = cell_step(curve, dims["batch"], dims["length"], dims["hidden"])
    first, times = time_steps(step, jax.block_until_ready, sweep.steps, sweep.warmup)
    step_s = statistics.median(times)
    device = jax.devices()[0]
    return {
        "curve": curve,
        "sweep": sweep.sweep,
        "size": size,
        **dims,
        "path": path,
        "step_ms": 1e3 * step_s,
        "step_times_ms": [1e3 * t for t in times],
        "first_call_s": first,
        "tokens_per_s": dims["batch"] * dims["length"] / step_s,
        "device": f"{device.platform}:{device.device_kind}",
    }


def with_ratios(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adds ``ratio``: each point's step time over the smallest size's, per curve."""
    smallest: dict[str, dict[str, Any]] = {}
    for p in points:
        if p["curve"] not in smallest or p["size"] < smallest[p["curve"]]["size"]:
            smallest[p["curve"]] = p
    return [{**p, "ratio": p["step_ms"] / smallest[p["curve"]]["step_ms"]} for p in points]


def measure(sweep: Sweep, progress: Callable[[dict[str, Any]], None] = lambda point: None) -> list[dict[str, Any]]:
    """Every point of every curve, sizes in increasing order, with ratios."""
    points = []
    for curve in sweep.curves:
        for size in sorted(sweep.sizes):
            points.append(measure_point(sweep, curve, size))
            progress(points[-1])
    return with_ratios(points)


# ----------------------------------------------------------------------------------------------------------------------
# Reports.


def _slope(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_tables(sweep: Sweep, points: Sequence[dict[str, Any]], fits: dict[str, dict[str, Any]]) -> str:
    """One markdown table per curve (size, path or model, step ms, tokens/s, x smallest) and the slopes."""
    name = SWEPT[sweep.sweep] if sweep.sweep == "vocab" else sweep.sweep
    path = "model" if sweep.sweep == "vocab" else "path"  # the language model's cell and layers; unroll's path
    lines = []
    for curve in sweep.curves:
        fit = fits[curve]
        lines += [
            f"## {curve}: slope {_slope(fit['all'])} (all points), {_slope(fit['upper_half'])} (upper half)",
            "",
            f"| {name} | {path} | step ms | tokens/s | x smallest |",
            "|---:|---|---:|---:|---:|",
        ]
        for p in (p for p in points if p["curve"] == curve):
            lines.append(
                f"| {p['size']} | {p['path']} | {p['step_ms']:.3f} | {p['tokens_per_s']:,.0f} | {p['ratio']:.2f} |"
            )
        lines.append("")
    lines += ["| curve | slope, all points | slope, upper half |", "|---|---:|---:|"]
    for curve in sweep.curves:
        fit = fits[curve]
        above = f" ({name} >= {fit['upper_half_sizes'][0]})" if fit["upper_half_sizes"] else ""
        lines.append(f"| {curve} | {_slope(fit['all'])} | {_slope(fit['upper_half'])}{above} |")
    return "\n".join(lines) + "\n"


def format_report(sweep: Sweep, command: str, device: str, tables: str) -> str:
    symbols = {"batch": "B", "length": "T", "hidden": "H"}
    fixed = ", ".join(f"{symbols[k]}={v}" for k, v in sweep.dims(0).items() if k in symbols and k != SWEPT[sweep.sweep])
    if sweep.sweep == "vocab":
        what = f"the {', '.join(sweep.curves)} preset's language_model.py training step (T = its bptt)"
    else:
        what = "the cell benchmark's training step (grad of mean(y**2) over unroll's outputs, default path), D = H"
    return (
        f"# Training-step cost against {AXIS_LABELS[sweep.sweep]}\n\n"
        f"`{command}`\n\n"
        f"- {what}; {fixed}; float32; {device}\n"
        f"- step ms: median of {sweep.steps} timed steps after the compiling call and {sweep.warmup} warm-up calls; "
        "tokens/s = B*T / step; x smallest = step time / the smallest size's\n"
        "- slope: least-squares fit of log(step time) against log(size): 1 = linear, 0 = flat; upper half: the "
        "larger half of the sizes only\n\n" + tables
    )


def cost_figure(sweep: Sweep, points: Sequence[dict[str, Any]], fits: dict[str, dict[str, Any]], path) -> None:
    """Step time against size, log-log, one line per curve with its slopes in the legend, and a slope-1 guide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    for curve in sweep.curves:
        chosen = [p for p in points if p["curve"] == curve]
        fit = fits[curve]
        upper = f", upper half {fit['upper_half']:.2f}" if fit["upper_half"] is not None else ""
        ax.plot(
            [p["size"] for p in chosen],
            [p["step_ms"] for p in chosen],
            "-o",
            markersize=4,
            linewidth=1.6,
            label=f"{curve}: slope {fit['all']:.2f}{upper}",
        )
    first = min(points, key=lambda p: (p["size"], p["step_ms"]))
    guide = np.array(sorted({p["size"] for p in points}), dtype=np.float64)
    ax.plot(guide, first["step_ms"] * guide / guide[0], ":", color="gray", label="slope 1 (linear)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(AXIS_LABELS[sweep.sweep])
    ax.set_ylabel("training step (ms)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    workdir.write_atomic(path, buffer.getvalue())


# ----------------------------------------------------------------------------------------------------------------------
# The command line.


def valid_sizes(values: Sequence[str] | None) -> bool:
    """--sizes' validator: unset (the sweep's defaults), or at least two distinct positive integers."""
    if values is None:
        return True
    if not all(v.strip().isdigit() and int(v) >= 1 for v in values) or len({int(v) for v in values}) < 2:
        raise flags.ValidationError(
            f"expected at least two distinct positive integers, e.g. 64,128,256; got {','.join(values)!r}"
        )
    return True


def build_sweep(
    sweep: str,
    cells: Sequence[str],
    sizes: Sequence[str] | None,
    fixed: dict[str, int | None],
    preset: str,
    steps: int,
    warmup: int,
    given: Sequence[str] = (),
) -> Sweep:
    """The measurement the flags ask for; ``app.UsageError`` (one line naming the flag) for a flag that does not
    apply to ``sweep``. ``fixed``: --batch, --length, --hidden (None: the default); ``given``: the flags set
    explicitly."""
    swept = SWEPT[sweep]
    if swept in fixed and fixed[swept] is not None:
        raise app.UsageError(f"--{swept} is what --sweep={sweep} varies: give its values with --sizes")
    if sweep == "vocab" and "cells" in given:
        raise app.UsageError("--cells applies to --sweep=T, B or H; --sweep=vocab times the --preset's model")
    if sweep != "vocab" and "preset" in given:
        raise app.UsageError(f"--preset applies to --sweep=vocab only, not --sweep={sweep}")
    if sweep == "vocab":
        config = lm_config(preset)
        defaults = {"batch": config.batch_size, "length": config.bptt, "hidden": config.hidden}
        curves = (preset,)
    else:
        defaults, curves = DEFAULT_FIXED, tuple(cells)
    dims = {k: v if (v := fixed.get(k)) is not None else defaults[k] for k in ("batch", "length", "hidden")}
    chosen = tuple(sorted({int(v) for v in sizes})) if sizes else DEFAULT_SIZES[sweep]
    return Sweep(sweep, curves, chosen, steps=steps, warmup=warmup, **dims)


def run(sweep: Sweep, out: Path, command: str, progress: Callable[[dict[str, Any]], None] = lambda point: None) -> str:
    """Measures ``sweep`` and writes results.json, results.md and cost.png into ``out``; returns the tables."""
    points = measure(sweep, progress)
    fits = {curve: slopes([p for p in points if p["curve"] == curve]) for curve in sweep.curves}
    device = points[0]["device"]
    tables = format_tables(sweep, points, fits)
    record = {"command": command, "sweep": dataclasses.asdict(sweep), "device": device}
    workdir.write_json(out / "results.json", {**record, "slopes": fits, "results": points})
    workdir.write_atomic(out / "results.md", format_report(sweep, command, device, tables))
    cost_figure(sweep, points, fits, out / "cost.png")
    return tables


def print_point(p: dict[str, Any]) -> None:
    print(
        f"{p['curve']} {p['sweep']}={p['size']} ({p['path']}): {p['step_ms']:.3f} ms/step, "
        f"{p['tokens_per_s']:,.0f} tokens/s, compile {p['first_call_s']:.1f} s",
        flush=True,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    given = [name for name in ("cells", "preset") if flags.FLAGS[name].present]
    fixed = {"batch": BATCH.value, "length": LENGTH.value, "hidden": HIDDEN.value}
    sweep = build_sweep(
        SWEEP.value, CELLS.value, SIZES.value, fixed, PRESET.value, STEPS.value, WARMUP.value, given=given
    )
    record = dataclasses.asdict(sweep)  # the preset is the vocab sweep's one curve
    try:
        out = workdir.claim(WORKDIR.value, "cost_curves", record, fixed=tuple(record))
    except workdir.WorkdirError as e:
        raise app.UsageError(str(e)) from e

    tables = run(sweep, out, shlex.join(["python", *sys.argv]), progress=print_point)
    print(tables, end="")
    print(f"wrote results.json, results.md and cost.png into {out}")


if __name__ == "__main__":  # the flags exist only when this is the script run: importing it defines none
    WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
    SWEEP = flags.DEFINE_enum("sweep", None, list(SWEEPS), "The dimension that varies.", required=True)
    CELLS = flags.DEFINE_list(
        "cells",
        list(DEFAULT_CELLS),
        f"Cells (--sweep=T, B, H): any of {', '.join(BUILTIN_CELLS + LINEAR_CELLS)}, or your own (file.py:attr or "
        "module:attr). --cell is the same flag.",
    )
    flags.DEFINE_alias("cell", "cells")
    SIZES = flags.DEFINE_list(
        "sizes",
        None,
        "Values of the swept dimension; default: "
        + "; ".join(f"{k}: {','.join(map(str, v))}" for k, v in DEFAULT_SIZES.items()),
    )
    BATCH = flags.DEFINE_integer(
        "batch", None, "Batch size B, unless swept (default 32, vocab: the preset's).", lower_bound=1
    )
    LENGTH = flags.DEFINE_integer(
        "length", None, "Sequence length T, unless swept (default 128, vocab: the preset's bptt).", lower_bound=1
    )
    HIDDEN = flags.DEFINE_integer(
        "hidden", None, "Hidden size H = input size D, unless swept (default 128, vocab: the preset's).", lower_bound=1
    )
    PRESET = flags.DEFINE_enum(
        "preset", "zaremba_small", list(LM_PRESETS), "--sweep=vocab: the language_model.py preset."
    )
    STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per point (their median is reported).", lower_bound=1)
    WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps per point after the compiling call.", lower_bound=0)

    flags.register_validator("cells", known_cells)
    flags.register_validator("sizes", valid_sizes)
    command_line.run(main)
