"""benchmarks/parallel_vs_scan.py: the associative scan (linear cells) or DEER and quasi-DEER (any other cell) timed
against the scan, with the iterations DEER took and the default named; an unknown cell refused."""

import json
import subprocess
import sys
from pathlib import Path

from seqjax.scan import fused_by_default, parallel_by_default

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "parallel_vs_scan.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_rows_time_both_paths_and_name_the_default(tmp_path):
    """Built-in cells and a user's (--cell, the same flag as --cells), IndRNN: not linear, so DEER."""
    cells = "--cell=mingru,rnn,examples/my_cells.py:indrnn"
    proc = run(f"--workdir={tmp_path / 'ab'}", cells, "--shapes=2x8x4", "--steps=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    linear, rnn, indrnn = json.loads((tmp_path / "ab" / "results.json").read_text())["results"]
    assert (linear["cell"], linear["shape"]) == ("mingru", "2x8x4") and linear["associative_s"] > 0
    assert linear["parallel"] == "associative" and linear["parallel_s"] == linear["associative_s"]
    assert linear["scan_over_parallel"] == linear["scan_s"] / linear["parallel_s"]
    assert linear["default"] == ("parallel" if parallel_by_default(8, 2, 4, linear["platform"]) else "scan")
    assert linear["deer_full"] is None and linear["deer_diagonal_s"] is None

    assert rnn["associative_s"] is None and rnn["scan_s"] > 0
    for mode in ("full", "diagonal"):
        assert rnn[f"deer_{mode}_s"] > 0 and rnn[f"deer_{mode}"]["converged"], rnn
        assert 1 <= rnn[f"deer_{mode}"]["iterations"] <= 8
    assert rnn["parallel_s"] == min(rnn["deer_full_s"], rnn["deer_diagonal_s"])
    assert rnn["scan_over_parallel"] == rnn["scan_s"] / rnn["parallel_s"]
    assert rnn["default"] == ("fused" if fused_by_default(2, 4, rnn["platform"]) else "scan")
    assert (indrnn["cell"], indrnn["associative_s"], indrnn["default"]) == ("examples/my_cells.py:indrnn", None, "scan")
    assert indrnn["deer_full"]["converged"] and indrnn["deer_diagonal"]["converged"] and indrnn["scan_s"] > 0
    table = (tmp_path / "ab" / "results.md").read_text()
    assert "| mingru | 2x8x4 |" in table and "| - | - |" in table
    assert f"| rnn | 2x8x4 | - | {1e3 * rnn['deer_full_s']:.1f} ({rnn['deer_full']['iterations']}) |" in table


def test_an_unknown_cell_is_refused_in_one_line(tmp_path):
    proc = run(f"--workdir={tmp_path / 'ab'}", "--cells=lstm,transformer")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "unknown cell 'transformer'" in proc.stderr
    assert not (tmp_path / "ab").exists()
