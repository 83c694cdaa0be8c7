"""benchmarks/parallel_vs_scan.py: both paths timed, the default named, a cell that is not linear refused."""

import json
import subprocess
import sys
from pathlib import Path

from seqjax.scan import parallel_by_default

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "parallel_vs_scan.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_rows_time_both_paths_and_name_the_default(tmp_path):
    proc = run(f"--workdir={tmp_path / 'ab'}", "--cells=mingru", "--shapes=2x8x4", "--steps=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads((tmp_path / "ab" / "results.json").read_text())["results"]
    assert (row["cell"], row["shape"]) == ("mingru", "2x8x4") and row["parallel_s"] > 0 and row["scan_s"] > 0
    assert row["scan_over_parallel"] == row["scan_s"] / row["parallel_s"]
    assert row["default"] == ("parallel" if parallel_by_default(8, 2, 4, row["platform"]) else "scan")
    assert "| mingru | 2x8x4 |" in (tmp_path / "ab" / "results.md").read_text()


def test_a_cell_that_is_not_linear_is_refused_in_one_line(tmp_path):
    proc = run(f"--workdir={tmp_path / 'ab'}", "--cells=lstm")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "--cells must name cells linear in their carry" in proc.stderr
    assert not (tmp_path / "ab").exists()
