"""benchmarks/remat_memory.py end to end with tiny shapes: every mode compiles, runs and is reported."""

import json
import subprocess
import sys
from pathlib import Path

import jax
from in_process import run_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "remat_memory.py"


def test_modes_are_measured_and_segments_store_less(tmp_path):
    """Both modes compiled and their temporaries reported; only the step under --run_below_gib is also run."""
    command = [sys.executable, str(SCRIPT), f"--workdir={tmp_path}", "--seq_lens=400", "--hidden=4", "--batch=2"]
    command += ["--modes=none", "--modes=segments", "--run_below_gib=0.0001"]  # 105 KiB: the segments' step runs
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["mode"]: r for r in json.loads((tmp_path / "results.json").read_text())["results"]}
    assert sorted(rows) == ["none", "segments"]
    assert rows["segments"]["segment_len"] == 20 and rows["none"]["segment_len"] is None
    assert rows["segments"]["temp_mib"] < rows["none"]["temp_mib"] / 4
    assert rows["segments"]["temp_mib"] < 0.1 < rows["none"]["temp_mib"], rows
    assert rows["segments"]["step_s"] > 0 and rows["segments"]["peak_rss_mib"] > 0 and "step_s" not in rows["none"]
    report = (tmp_path / "results.md").read_text()
    assert "| 400 | segments | 20 |" in report and "| 400 | none | - |" in report and "| not run |" in report
    assert (tmp_path / "memory.png").stat().st_size > 10_000


def test_bad_lengths_are_refused_before_anything_is_written(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), f"--workdir={tmp_path / 'w'}", "--seq_lens=10,x"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0 and "--seq_lens must be a list of positive integers" in proc.stderr
    assert not (tmp_path / "w").exists()


def test_a_users_cell_is_measured(tmp_path, capsys, monkeypatch):
    """--cell=examples/my_cells.py:indrnn: the step compiled and run (the worker's work, here in this process)."""
    import remat_memory

    def worker(command, **kwargs):  # [python, remat_memory.py, kind, spec]: the worker's work and its JSON line
        kind, spec = command[2], json.loads(command[3])
        measured = {"compile": remat_memory.compiled_memory, "run": remat_memory.run_step}[kind](spec)
        return subprocess.CompletedProcess(command, 0, stdout=json.dumps(measured) + "\n", stderr="")

    monkeypatch.setattr(subprocess, "run", worker)
    args = ["--cell=examples/my_cells.py:indrnn", "--seq_lens=9", "--hidden=2", "--batch=1", "--modes=both"]
    with jax.numpy_rank_promotion("allow"):  # IndRNN's u * h: u [h], h [b, h]
        code, _, stderr = run_script(SCRIPT, capsys, f"--workdir={tmp_path}", *args, "--run_below_gib=1")
    assert code == 0, stderr
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["config"]["cell"] == "examples/my_cells.py:indrnn"
    (row,) = result["results"]
    assert (row["mode"], row["segment_len"]) == ("both", 3) and row["temp_mib"] > 0 and row["step_s"] > 0
