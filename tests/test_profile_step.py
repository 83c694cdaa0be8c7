"""benchmarks/profile_step.py: operation times summed from trace events, and an end-to-end tiny profile."""

import json
import subprocess
import sys
from pathlib import Path

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
