r"""Runs an experiment over a grid of flag values, one local process per combination.

    python launch/sweep.py --script=experiments/gradient_flow.py --workdir=runs/sweep \
        --grid="seed=0,1,2" --grid="seq_len=50,100" -- --train_steps=0

    python launch/sweep.py --script=experiments/long_dependency.py --workdir=runs/adding_seeds \
        --grid="seed=0,1,2" --parallel=2 -- --seq_lens=50,100 --train_steps=1000

Each combination writes into its own ``<workdir>/<flag>=<value>,...`` directory (its output in
``<workdir>/<flag>=<value>,....log``); arguments after ``--`` go to every run. Runs ``--parallel``
processes at a time (``--dry_run`` only prints the commands), then collects the runs into
``<workdir>/sweep.csv`` and ``sweep.md``: one row per row of a run's ``results.json`` (a list of
results, as long_dependency writes) or else per run with the top-level numbers of its
``summary.json``, each with the run's grid values, exit status and wall time. ``sweep.png`` draws
``--plot_y`` against ``--plot_x``, one line per combination of the other grid axes (and per cell),
averaged over seeds with a min-max band (its numbers in ``sweep_figure.csv``). Exits non-zero if any
run failed.
"""

from __future__ import annotations

import itertools
import json
import math
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from absl import app, flags

from seqjax import plots, workdir

SCRIPT = flags.DEFINE_string("script", None, "Experiment script to run.", required=True)
WORKDIR = flags.DEFINE_string("workdir", None, "Root directory: one sub-directory per run.", required=True)
GRID = flags.DEFINE_multi_string("grid", [], "'flag=v1,v2,...'; repeat the flag for more axes.")
PARALLEL = flags.DEFINE_integer("parallel", 1, "Processes at a time.", lower_bound=1)
DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands instead of running them.")
PLOT_X = flags.DEFINE_string(
    "plot_x", None, "Column for sweep.png's x axis (default: seq_len if the runs report it, else the first grid axis)."
)
PLOT_Y = flags.DEFINE_string(
    "plot_y", None, "Column for sweep.png's y axis (default: value if the runs report it, else their first number)."
)


def parse_grid(specs: list[str]) -> list[tuple[str, list[str]]]:
    """``["seed=0,1", "lr=0.1"]`` -> ``[("seed", ["0", "1"]), ("lr", ["0.1"])]``."""
    axes = []
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not name or not values:
            raise app.UsageError(f"--grid expects 'flag=v1,v2,...', got {spec!r}")
        axes.append((name.lstrip("-"), values.split(",")))
    return axes


def commands(script: str, root: str, axes, extra: list[str]) -> list[tuple[Path, list[str]]]:
    """One ``(workdir, argv)`` per combination of the grid."""
    runs = []
    for values in itertools.product(*(v for _, v in axes)) if axes else [()]:
        pairs = [(name, value) for (name, _), value in zip(axes, values, strict=True)]
        run_dir = Path(root) / (",".join(f"{n}={v}" for n, v in pairs) or "run")
        argv = [sys.executable, script, f"--workdir={run_dir}", *(f"--{n}={v}" for n, v in pairs), *extra]
        runs.append((run_dir, argv))
    return runs


def collect(runs, axes, outcomes) -> list[dict]:
    """One row per run: its grid values, exit status, wall time and the numbers of its summary.json."""
    rows = []
    for (run_dir, _), values, (code, seconds) in zip(
        runs, itertools.product(*(v for _, v in axes)) if axes else [()], outcomes, strict=True
    ):
        row = {name: value for (name, _), value in zip(axes, values, strict=True)}
        row.update(run=run_dir.name, status="ok" if code == 0 else f"exit {code}", wall_s=round(seconds, 1))
        results, summary = run_dir / "results.json", run_dir / "summary.json"
        if code == 0 and results.exists():
            rows.extend({**row, **_scalars(result)} for result in json.loads(results.read_text()))
            continue
        if code == 0 and summary.exists():
            row.update({k: v for k, v in _scalars(json.loads(summary.read_text())).items() if _is_number(v)})
        rows.append(row)
    return rows


def _scalars(data: dict) -> dict:
    return {k: v for k, v in data.items() if isinstance(v, str | int | float | bool)}


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def figure_lines(rows: list[dict], axes, x: str, y: str) -> tuple[list[plots.Spread], list[str] | None]:
    """sweep.png's lines: rows grouped by every grid axis but ``x`` and ``seed`` (and by ``cell`` when
    the runs report one), ``y`` averaged over the rest at each x with its min and max.

    Returns the lines and, when x is not numeric, the x tick labels (the lines then use positions).
    """
    rows = [r for r in rows if r["status"] == "ok" and x in r and _is_number(r.get(y))]
    numeric = all(_as_float(r[x]) is not None for r in rows)
    ticks = None if numeric else list(dict.fromkeys(str(r[x]) for r in rows))
    keys = [name for name, _ in axes if name not in (x, "seed")] + (["cell"] if any("cell" in r for r in rows) else [])
    groups: dict[str, dict[float, list[float]]] = {}
    for r in rows:
        label = ", ".join(f"{k}={r[k]}" if k != "cell" else str(r[k]) for k in keys if k in r and k != x) or y
        position = _as_float(r[x]) if numeric else float(ticks.index(str(r[x])))
        groups.setdefault(label, {}).setdefault(position, []).append(float(r[y]))
    lines = []
    for label, by_x in groups.items():
        xs = np.array(sorted(by_x))
        values = [np.array(by_x[v]) for v in xs]
        lines.append(
            plots.Spread(
                label,
                xs,
                np.array([v.mean() for v in values]),
                np.array([v.min() for v in values]),
                np.array([v.max() for v in values]),
            )
        )
    return lines, ticks


def _as_float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def write_figure(root: Path, rows: list[dict], axes, x: str | None, y: str | None) -> Path | None:
    """Draws sweep.png (and writes its numbers to sweep_figure.csv) if the rows have something to plot;
    returns its path (or None)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    x = x or ("seq_len" if "seq_len" in columns else (axes[0][0] if axes else None))
    skip = {name for name, _ in axes} | {"seq_len", "wall_s", "baseline", "train_steps", "test_batches", "train_s"}
    y = y or (
        "value"
        if "value" in columns
        else next((c for c in columns if c not in skip and any(_is_number(r.get(c)) for r in rows)), None)
    )
    if x is None or y is None:
        return None
    lines, ticks = figure_lines(rows, axes, x, y)
    if not lines:
        return None
    baselines = {r["baseline"] for r in rows if _is_number(r.get("baseline"))} if y == "value" else set()
    metric = {str(r["metric"]) for r in rows if "metric" in r} if y == "value" else set()
    positive = all(np.all(line.low > 0) for line in lines)
    spans = [line.high.max() / line.low.min() for line in lines] if positive else [1.0]
    workdir.write_csv(
        root / "sweep_figure.csv",
        [
            {"line": line.label, x: ticks[int(v)] if ticks else v, "mean": m, "min": lo, "max": hi}
            for line in lines
            for v, m, lo, hi in zip(line.x, line.mean, line.low, line.high, strict=True)
        ],
    )
    path = root / "sweep.png"
    plots.spread_figure(
        lines,
        path,
        xlabel=x,
        ylabel=metric.pop() if len(metric) == 1 else y,
        baseline=baselines.pop() if len(baselines) == 1 else None,
        log_y=positive and max(spans) > 30,
        xticks=ticks,
    )
    return path


def write_tables(root: Path, rows: list[dict]) -> None:
    workdir.write_csv(root / "sweep.csv", rows)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    workdir.write_atomic(root / "sweep.md", "\n".join(lines) + "\n")


def main(argv):
    axes = parse_grid(GRID.value)
    runs = commands(SCRIPT.value, WORKDIR.value, axes, argv[1:])
    if DRY_RUN.value:
        for _, args in runs:
            print(shlex.join(args))
        return 0

    root = Path(WORKDIR.value)
    root.mkdir(parents=True, exist_ok=True)

    def launch(run):
        run_dir, args = run
        started = time.perf_counter()
        # The log lives beside the run's directory: the experiment must find its --workdir its own.
        with open(run_dir.with_name(run_dir.name + ".log"), "w") as log:
            code = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
        print(f"{'ok ' if code == 0 else 'FAILED'} {run_dir}", flush=True)
        return code, time.perf_counter() - started

    with ThreadPoolExecutor(PARALLEL.value) as pool:
        outcomes = list(pool.map(launch, runs))
    rows = collect(runs, axes, outcomes)
    write_tables(root, rows)
    figure = write_figure(root, rows, axes, PLOT_X.value, PLOT_Y.value)
    failed = sum(code != 0 for code, _ in outcomes)
    print(
        f"{len(runs) - failed} of {len(runs)} runs succeeded; table in {root / 'sweep.md'}"
        + (f", figure in {figure}" if figure else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    app.run(main)
