r"""Runs an experiment over a grid of flag values, one local process per combination.

    python launch/sweep.py --script=experiments/gradient_flow.py --workdir=runs/sweep \
        --grid="seed=0,1,2" --grid="seq_len=50,100" -- --train_steps=0

Each combination writes into its own ``<workdir>/<flag>=<value>,...`` directory; arguments after
``--`` go to every run. Runs ``--parallel`` processes at a time (``--dry_run`` only prints the
commands), then collects one row per run (its grid values, exit status, wall time and the top-level
numbers of its ``summary.json``) into ``<workdir>/sweep.csv`` and ``sweep.md``; exits non-zero if any
run failed.
"""

from __future__ import annotations

import itertools
import json
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from absl import app, flags

from seqjax import workdir

SCRIPT = flags.DEFINE_string("script", None, "Experiment script to run.", required=True)
WORKDIR = flags.DEFINE_string("workdir", None, "Root directory: one sub-directory per run.", required=True)
GRID = flags.DEFINE_multi_string("grid", [], "'flag=v1,v2,...'; repeat the flag for more axes.")
PARALLEL = flags.DEFINE_integer("parallel", 1, "Processes at a time.", lower_bound=1)
DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands instead of running them.")


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
        summary = run_dir / "summary.json"
        if code == 0 and summary.exists():
            data = json.loads(summary.read_text())
            row.update({k: v for k, v in data.items() if isinstance(v, int | float) and not isinstance(v, bool)})
        rows.append(row)
    return rows


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

    def launch(run):
        run_dir, args = run
        run_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with open(run_dir / "sweep.log", "w") as log:
            code = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
        print(f"{'ok ' if code == 0 else 'FAILED'} {run_dir}", flush=True)
        return code, time.perf_counter() - started

    with ThreadPoolExecutor(PARALLEL.value) as pool:
        outcomes = list(pool.map(launch, runs))
    root = Path(WORKDIR.value)
    write_tables(root, collect(runs, axes, outcomes))
    failed = sum(code != 0 for code, _ in outcomes)
    print(f"{len(runs) - failed} of {len(runs)} runs succeeded; table in {root / 'sweep.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    app.run(main)
