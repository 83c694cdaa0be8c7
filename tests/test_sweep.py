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
    dirs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert dirs == [f"seed={s},lr={lr}" for s in (0, 1) for lr in ("0.1", "0.2", "0.3")]
    text = (tmp_path / "runs" / "seed=1,lr=0.2" / "args.txt").read_text()
    assert "--seed=1" in text and "--lr=0.2" in text and "--extra=yes" in text
    assert "6 of 6 runs succeeded" in result.stdout


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
