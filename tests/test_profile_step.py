"""benchmarks/profile_step.py: operation times summed from trace events, and an end-to-end tiny profile."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
from in_process import run_script
from profile_step import operation_times

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_step.py"


def test_operation_times_sum_per_step_and_skip_runtime_events():
    events = [
        {"ph": "X", "name": "ynn_fusion", "dur": 300},
        {"ph": "X", "name": "ynn_fusion", "dur": 500},
        {"ph": "X", "name": "add_tanh_fusion", "dur": 100},
        {"ph": "X", "name": "ThunkExecutor::Execute", "dur": 5000},
        {"ph": "X", "name": "$api.py:2479 block_until_ready", "dur": 9000},
        {"ph": "i", "name": "dot.1"},
    ]
    assert operation_times(events, steps=2) == [
        {"op": "ynn_fusion", "ms_per_step": 0.4, "count_per_step": 1},
        {"op": "add_tanh_fusion", "ms_per_step": 0.05, "count_per_step": 0},
    ]


def test_profile_names_the_loop_operations(tmp_path):
    command = [sys.executable, str(SCRIPT), f"--workdir={tmp_path}", "--cell=gru", "--shape=2x7x4", "--steps=2"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "profile.json").read_text())
    assert result["step_ms"] > 0 and result["fused"] is True
    assert any(op["count_per_step"] == 7 for op in result["operations"])  # once per time step
    assert "| operation | ms / step |" in (tmp_path / "profile.md").read_text()


def test_a_users_cell_is_profiled_on_its_scanned_step(tmp_path, capsys, monkeypatch):
    """--cell=examples/my_cells.py:indrnn has no fused sequence: its scanned step is profiled (here in this process,
    whose XLA did not start with the trace flag: no operation need show), and asking for --fused is one line."""
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))  # the script adds its flag: put back after
    args = [f"--workdir={tmp_path}", "--cell=examples/my_cells.py:indrnn", "--shape=1x3x2", "--steps=1"]
    code, _, stderr = run_script(SCRIPT, capsys, *args, "--fused")
    assert code == 1 and stderr == "profile_step.py: --fused: examples/my_cells.py:indrnn has no fused sequence; " \
        "--nofused profiles its scanned step\n"  # fmt: skip
    with jax.numpy_rank_promotion("allow"):  # IndRNN's u * h: u [h], h [b, h]
        code, stdout, stderr = run_script(SCRIPT, capsys, *args)
    assert code == 0, stderr
    result = json.loads((tmp_path / "profile.json").read_text())
    assert (result["cell"], result["fused"]) == ("examples/my_cells.py:indrnn", False) and result["step_ms"] > 0
    assert stdout.startswith("examples/my_cells.py:indrnn 1x3x2 fused=False: step ")
