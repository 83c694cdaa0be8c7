"""benchmarks/fused_vs_scan.py: both paths timed, the default named, bad cells refused."""

import json
import subprocess
import sys
from pathlib import Path

from seqjax.cells import lstm_native
from seqjax.scan import fused_by_default

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fused_vs_scan.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_rows_time_both_paths_and_name_the_default(tmp_path):
    proc = run(f"--workdir={tmp_path / 'ab'}", "--cells=lstm,gru", "--shapes=2x3x4,64x3x64", "--steps=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "ab" / "results.json").read_text())["results"]
    assert [(r["cell"], r["shape"]) for r in rows] == [
        ("lstm", "2x3x4"),
        ("gru", "2x3x4"),
        ("lstm", "64x3x64"),
        ("gru", "64x3x64"),
    ]
    try:  # the LSTM's native loops make its fused sequence the default at every shape on CPU
        lstm_native.load()
        native = rows[0]["platform"] == "cpu"
    except lstm_native.NativeUnavailable:
        native = False
    for r, (batch, hidden) in zip(rows, [(2, 4), (2, 4), (64, 64), (64, 64)], strict=True):
        assert r["fused_s"] > 0 and r["scan_s"] > 0
        assert r["scan_over_fused"] == r["scan_s"] / r["fused_s"]
        by_shape = fused_by_default(batch, hidden, r["platform"])
        assert r["default"] == ("fused" if by_shape or (native and r["cell"] == "lstm") else "scan")
    assert [r["default"] for r in rows][1::2] == ["fused", "fused" if rows[0]["platform"] != "cpu" else "scan"]
    assert "| lstm | 64x3x64 |" in (tmp_path / "ab" / "results.md").read_text()


def test_a_cell_without_a_fused_sequence_is_refused(tmp_path):
    """A user's cell (--cell, the same flag as --cells) without a fused sequence: nothing to compare, one line."""
    proc = run(f"--workdir={tmp_path / 'ab'}", "--cell=lstm,examples/my_cells.py:indrnn")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "examples/my_cells.py:indrnn has no fused sequence to compare with its scanned step" in proc.stderr
    assert not (tmp_path / "ab").exists()
