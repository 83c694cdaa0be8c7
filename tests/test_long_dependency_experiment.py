"""experiments/long_dependency.py end to end, with tiny settings, into a temporary workdir."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

from seqjax.experiments import long_dependency  # noqa: E402  (after sys.path: the tests use my_cells.py)


@pytest.fixture(autouse=True)
def _standard_promotion():
    """optax's Adam (b ** count, int32 count) and the user's IndRNN (u * h) need standard promotion."""
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        yield


TINY = {
    "hidden": 6,
    "batch": 4,
    "train_steps": 4,
    "log_every": 2,
    "checkpoint_every": 2,
    "profile_every": 2,
    "test_batches": 2,
}


def test_adding_with_a_user_cell_writes_everything_and_resumes(tmp_path):
    config = long_dependency.Config(cells=("gru", "my_cells:indrnn"), seq_lens=(5, 7), **TINY)
    results = long_dependency.run(config, tmp_path, progress=False)
    assert [(r["cell"], r["seq_len"]) for r in results] == [
        ("gru", 5),
        ("gru", 7),
        ("my_cells:indrnn", 5),
        ("my_cells:indrnn", 7),
    ]
    for r in results:
        assert r["metric"] == "test MSE" and r["baseline"] == pytest.approx(1 / 6) and np.isfinite(r["value"])
        assert r["solved"] == (r["value"] < 0.01)
        assert sorted(r["profiles"]) == [0, 2, 4] and r["profiles"][0].shape == (r["seq_len"],)
    with open(tmp_path / "gradient_profiles.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * (5 + 7) * 2  # snapshots x time steps (both lengths) x cells
    for name in ("results.csv", "results.json", "success.png", "gradient_heatmap.png", "learning_curves.png"):
        assert (tmp_path / name).stat().st_size > 0
    metrics = (tmp_path / "runs" / "gru_T7" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in metrics] == [2, 4]
    again = long_dependency.run(config, tmp_path, progress=False)  # resumes: nothing left to train
    assert [r["value"] for r in again] == [r["value"] for r in results]
    assert (tmp_path / "runs" / "gru_T7" / "metrics.jsonl").read_text().splitlines() == metrics


@pytest.mark.parametrize(
    ("task", "metric", "baseline"), [("copy", "recall error", 0.875), ("temporal_order", "test error", 0.75)]
)
def test_token_tasks(tmp_path, task, metric, baseline):
    config = long_dependency.Config(cells=("lstm",), task=task, seq_lens=(10,), **TINY)
    (result,) = long_dependency.run(config, tmp_path, progress=False)
    assert result["metric"] == metric and result["baseline"] == pytest.approx(baseline)
    assert 0.0 <= result["value"] <= 1.0


def test_cli_rejects_bad_input(tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, str(EXPERIMENTS / "long_dependency.py"), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    unknown = cli(f"--workdir={tmp_path / 'a'}", "--task=parity")
    assert unknown.returncode != 0 and "<adding|adding_hochreiter|copy|temporal_order>" in unknown.stderr
    lengths = cli(f"--workdir={tmp_path / 'a'}", "--seq_lens=10,-5")
    assert lengths.returncode != 0 and "--seq_lens must be a list of positive integers" in lengths.stderr
    (tmp_path / "file").write_text("x")
    not_a_dir = cli(f"--workdir={tmp_path / 'file'}", "--seq_lens=5", "--train_steps=1")
    assert not_a_dir.returncode != 0 and "exists and is not a directory" in not_a_dir.stderr
    assert (tmp_path / "file").read_text() == "x"
