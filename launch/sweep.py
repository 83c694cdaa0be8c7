r"""Runs an experiment over a grid of flag values, one local process per combination.

    python launch/sweep.py --script=experiments/gradient_flow.py --workdir=runs/sweep \
        --grid="seed=0,1,2" --grid="seq_len=50,100" -- --train_steps=0

Each combination writes into its own ``<workdir>/<flag>=<value>,...`` directory; arguments after
``--`` go to every run. Runs ``--parallel`` processes at a time and exits non-zero if any failed.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from absl import app, flags

SCRIPT = flags.DEFINE_string("script", None, "Experiment script to run.", required=True)
WORKDIR = flags.DEFINE_string("workdir", None, "Root directory: one sub-directory per run.", required=True)
GRID = flags.DEFINE_multi_string("grid", [], "'flag=v1,v2,...'; repeat the flag for more axes.")
PARALLEL = flags.DEFINE_integer("parallel", 1, "Processes at a time.", lower_bound=1)


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


def main(argv):
    runs = commands(SCRIPT.value, WORKDIR.value, parse_grid(GRID.value), argv[1:])

    def launch(run):
        run_dir, args = run
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "sweep.log", "w") as log:
            code = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
        print(f"{'ok ' if code == 0 else 'FAILED'} {run_dir}", flush=True)
        return code

    with ThreadPoolExecutor(PARALLEL.value) as pool:
        failed = sum(code != 0 for code in pool.map(launch, runs))
    print(f"{len(runs) - failed} of {len(runs)} runs succeeded")
    return 1 if failed else 0


if __name__ == "__main__":
    app.run(main)
