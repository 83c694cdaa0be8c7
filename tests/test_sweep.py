"""launch/sweep.py: the grid expands to one run per combination, each in its own workdir."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_sweep_runs_every_combination(tmp_path):
    script = tmp_path / "echo_flags.py"
    script.write_text(
        "import sys, pathlib\n"
        "args = dict(a.lstrip('-').split('=', 1) for a in sys.argv[1:])\n"
        "pathlib.Path(args['workdir'], 'args.txt').write_text(' '.join(sorted(sys.argv[1:])))\n"
        "import json; pathlib.Path(args['workdir'], 'summary.json').write_text("
        "json.dumps({'score': float(args['lr']) * 10, 'name': 'x', 'nested': {'a': 1}}))\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "launch" / "sweep.py"),
            f"--script={script}",
            f"--workdir={tmp_path / 'runs'}",
            "--grid=seed=0,1",
            "--grid=lr=0.1,0.2,0.3",
            "--parallel=2",
            "--",
            "--extra=yes",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
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
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "launch" / "sweep.py"),
            "--script=experiments/gradient_flow.py",
            f"--workdir={tmp_path / 'runs'}",
            "--grid=seed=0,1",
            "--dry_run",
            "--",
            "--train_steps=0",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    commands = result.stdout.strip().splitlines()
    assert len(commands) == 2
    assert commands[1].endswith(f"--workdir={tmp_path / 'runs' / 'seed=1'} --seed=1 --train_steps=0")
    assert not (tmp_path / "runs").exists()


def test_sweep_reports_failures(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text("import sys\nsys.exit(3)\n")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "launch" / "sweep.py"),
            f"--script={script}",
            f"--workdir={tmp_path}",
            "--grid=seed=0",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 1
    assert "FAILED" in result.stdout and "0 of 1 runs succeeded" in result.stdout
