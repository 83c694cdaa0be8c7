"""launch/sweep.py: the grid expands to one run per combination, each in its own workdir."""

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep(*args: str) -> subprocess.CompletedProcess:
    """Runs launch/sweep.py with ``args`` in a subprocess, capturing its output."""
    command = [sys.executable, str(ROOT / "launch" / "sweep.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


def test_sweep_runs_every_combination(tmp_path):
    script = tmp_path / "echo_flags.py"
    script.write_text(
        "import sys, pathlib\n"
        "args = dict(a.lstrip('-').split('=', 1) for a in sys.argv[1:])\n"
        "pathlib.Path(args['workdir']).mkdir()\n"
        "pathlib.Path(args['workdir'], 'args.txt').write_text(' '.join(sorted(sys.argv[1:])))\n"
        "import json; pathlib.Path(args['workdir'], 'summary.json').write_text("
        "json.dumps({'score': float(args['lr']) * 10, 'name': 'x', 'nested': {'a': 1}}))\n"
    )
    result = sweep(
        f"--script={script}",
        f"--workdir={tmp_path / 'runs'}",
        "--grid=seed=0,1",
        "--grid=lr=0.1,0.2,0.3",
        "--parallel=2",
        "--",
        "--extra=yes",
    )
    assert result.returncode == 0, result.stderr
    dirs = sorted(p.name for p in (tmp_path / "runs").iterdir() if p.is_dir())
    assert dirs == [f"seed={s},lr={lr}" for s in (0, 1) for lr in ("0.1", "0.2", "0.3")]
    text = (tmp_path / "runs" / "seed=1,lr=0.2" / "args.txt").read_text()
    assert "--seed=1" in text and "--lr=0.2" in text and "--extra=yes" in text
    assert "6 of 6 runs succeeded" in result.stdout
    lines = (tmp_path / "runs" / "sweep.csv").read_text().splitlines()
    assert lines[0] == "seed,lr,run,status,wall_s,score"
    assert len(lines) == 7 and lines[5].startswith('1,0.2,"seed=1,lr=0.2",ok,') and lines[5].endswith(",2.0")
    assert "| seed | lr | run | status | wall_s | score |" in (tmp_path / "runs" / "sweep.md").read_text()


def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path):
    result = sweep(
        "--script=experiments/gradient_flow.py",
        f"--workdir={tmp_path / 'runs'}",
        "--grid=seed=0,1",
        "--dry_run",
        "--",
        "--train_steps=0",
    )
    assert result.returncode == 0, result.stderr
    commands = result.stdout.strip().splitlines()
    assert len(commands) == 2
    assert commands[1].endswith(f"--workdir={tmp_path / 'runs' / 'seed=1'} --seed=1 --train_steps=0")
    assert not (tmp_path / "runs").exists()


def test_sweep_reports_failures(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text("import sys\nsys.exit(3)\n")
    result = sweep(f"--script={script}", f"--workdir={tmp_path}", "--grid=seed=0")
    assert result.returncode == 1
    assert "FAILED" in result.stdout and "0 of 1 runs succeeded" in result.stdout


def test_sweep_collects_result_lists_and_draws_them_averaged_over_seeds(tmp_path):
    script = tmp_path / "fake_long_dependency.py"
    script.write_text(
        "import sys, json, pathlib\n"
        "args = dict(a.lstrip('-').split('=', 1) for a in sys.argv[1:])\n"
        "out = pathlib.Path(args['workdir']); out.mkdir()\n"
        "seed, lr = int(args['seed']), float(args['lr'])\n"
        "rows = [{'cell': c, 'seq_len': t, 'metric': 'test MSE', 'baseline': 0.5,"
        " 'value': lr * t * (1 + seed) * (2 if c == 'gru' else 1)} for c in ('lstm', 'gru') for t in (10, 20)]\n"
        "(out / 'results.json').write_text(json.dumps(rows))\n"
    )
    result = sweep(f"--script={script}", f"--workdir={tmp_path / 'runs'}", "--grid=seed=0,1", "--grid=lr=1,3")
    assert result.returncode == 0, result.stderr
    assert "figure in" in result.stdout and (tmp_path / "runs" / "sweep.png").stat().st_size > 10_000
    assert (tmp_path / "runs" / "seed=0,lr=1.log").exists()  # logs beside, not inside, each run's workdir
    with open(tmp_path / "runs" / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 4  # runs x (cells x lengths)
    with open(tmp_path / "runs" / "sweep_figure.csv") as f:
        lines = {(r["line"], float(r["seq_len"])): r for r in csv.DictReader(f)}
    # One line per lr and cell; seeds 0 and 1 give factors 1 and 2: mean 1.5x, band 1x..2x.
    assert len(lines) == 2 * 2 * 2
    gru = lines[("lr=3, gru", 20.0)]
    assert (float(gru["mean"]), float(gru["min"]), float(gru["max"])) == (3 * 20 * 2 * 1.5, 3 * 20 * 2, 3 * 20 * 2 * 2)
