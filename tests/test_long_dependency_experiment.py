"""experiments/long_dependency.py end to end, with tiny settings, into a temporary workdir."""

import csv
import json

import jax
import long_dependency
import numpy as np
import pytest
from refusals import refusal

from seqjax import config as config_lib
from seqjax import experiment as ex

INDRNN = "examples/my_cells.py:indrnn"  # a user's cell by its file (the tests run from the repository's root)


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
    config = long_dependency.Config(cells=("gru", INDRNN), seq_lens=(5, 7), **TINY)
    results = ex.run(long_dependency.EXPERIMENT, config, tmp_path)
    assert [(r["cell"], r["seq_len"]) for r in results] == [
        ("gru", 5),
        ("gru", 7),
        (INDRNN, 5),
        (INDRNN, 7),
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
    again = ex.run(long_dependency.EXPERIMENT, config, tmp_path)  # resumes: nothing left to train
    assert [r["value"] for r in again] == [r["value"] for r in results]
    assert (tmp_path / "runs" / "gru_T7" / "metrics.jsonl").read_text().splitlines() == metrics


@pytest.mark.parametrize(
    ("task", "metric", "baseline"), [("copy", "recall error", 0.875), ("temporal_order", "test error", 0.75)]
)
def test_token_tasks(tmp_path, task, metric, baseline):
    config = long_dependency.Config(cells=("lstm",), task=task, seq_lens=(10,), **TINY)
    (result,) = ex.run(long_dependency.EXPERIMENT, config, tmp_path)
    assert result["metric"] == metric and result["baseline"] == pytest.approx(baseline)
    assert 0.0 <= result["value"] <= 1.0


def test_a_longer_rerun_continues_and_equals_a_straight_run(tmp_path):
    short = long_dependency.Config(cells=("lstm",), seq_lens=(6,), **{**TINY, "train_steps": 2})
    ex.run(long_dependency.EXPERIMENT, short, tmp_path / "extended")
    (extended,) = ex.run(long_dependency.EXPERIMENT, config_lib.replace(short, train_steps=4), tmp_path / "extended")
    (straight,) = ex.run(long_dependency.EXPERIMENT, config_lib.replace(short, train_steps=4), tmp_path / "straight")
    assert extended["value"] == straight["value"]
    assert sorted(extended["profiles"]) == [0, 2, 4]  # the profiles before the rerun were kept on disk
    for step in (0, 2, 4):
        np.testing.assert_array_equal(extended["profiles"][step], straight["profiles"][step])
    metrics = [(tmp_path / d / "runs" / "lstm_T6" / "metrics.jsonl").read_text() for d in ("extended", "straight")]
    assert [json.loads(line)["loss"] for line in metrics[0].splitlines()] == [
        json.loads(line)["loss"] for line in metrics[1].splitlines()
    ]
    result = json.loads((tmp_path / "extended" / "runs" / "lstm_T6" / "result.json").read_text())
    assert result["train_steps"] == 4 and result["train_s"] > 0


def test_cli_rejects_bad_flags_and_foreign_or_contradicting_workdirs_touching_nothing(tmp_path):
    """Every refusal comes before any training (each run here ends within its flag and workdir checks)."""
    with pytest.raises(config_lib.ConfigError, match=r"^--task must be one of adding, adding_hochreiter, copy"):
        long_dependency.Config(task="parity")  # a bad value: refused when the config is built, in one line
    with pytest.raises(config_lib.ConfigError, match=r"^--seq_lens must be at least 1, got -5$"):
        long_dependency.Config(seq_lens=(10, -5))
    (tmp_path / "file").write_text("x")
    not_a_dir = refusal(long_dependency, f"--workdir={tmp_path / 'file'}", "--seq_lens=5", "--train_steps=1")
    assert "exists and is not a directory" in not_a_dir
    assert (tmp_path / "file").read_text() == "x"

    def snapshot(path):
        return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(path.rglob("*")) if p.is_file()}

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = refusal(long_dependency, f"--workdir={foreign}", "--seq_lens=5", "--train_steps=1")
    assert f"--workdir {foreign} is not empty and holds no flags.json of a seqjax run (found 'notes.txt')" in refused
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]

    # A workdir claimed by a run with --hidden=4 (the claim is what the CLI checks against; the refusals of
    # tests/test_workdir.py are the same function's, so the CLI is checked once here).
    earlier = long_dependency.Config(cells=("rnn",), seq_lens=(5,), hidden=4)
    with ex.claimed(long_dependency.EXPERIMENT, earlier, tmp_path / "run"):
        pass
    before = snapshot(tmp_path / "run")
    contradicting = refusal(
        long_dependency, f"--workdir={tmp_path / 'run'}", "--cells=rnn", "--seq_lens=5", "--hidden=8"
    )
    assert "holds a run made with --hidden=4, this run has --hidden=8" in contradicting
    assert snapshot(tmp_path / "run") == before
