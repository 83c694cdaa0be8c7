"""experiments/task_grid.py end to end on a tiny grid with a user's cell, interrupted and resumed; its refusals."""

import json

import jax
import numpy as np
import pytest
import task_grid
from refusals import refusal

from seqjax import config as config_lib
from seqjax import experiment as ex
from seqjax.data import memory_tasks
from seqjax.metric_writers import MetricWriter
from seqjax.models import task_model
from seqjax.models import task_training as tt

INDRNN = "examples/my_cells.py:indrnn"  # a user's cell by its file (the tests run from the repository's root)
TINY = dict(hidden=8, batch=8, train_steps=4, log_every=2, checkpoint_every=2, profile_every=2, test_batches=1,
            train_length=16, test_lengths=(32,))  # fmt: skip


@pytest.fixture(autouse=True)
def _standard_promotion():
    """optax's Adam (b ** count, int32 count) and the user's IndRNN (u * h) need standard promotion."""
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        yield


def _timeless(rows):
    return [{k: v for k, v in row.items() if k not in ("train_s", "profiles")} for row in rows]


def test_a_tiny_grid_with_a_users_cell_is_interrupted_resumes_and_ends_as_a_straight_one(tmp_path, monkeypatch):
    config = task_grid.Config(cells=("gru", INDRNN), tasks=("parity",), **TINY)
    write = MetricWriter.write

    def interrupted(self, step, metrics):  # the IndRNN's run stops after its checkpoint at 2
        if step == 4 and "indrnn" in str(self.path):
            raise KeyboardInterrupt
        write(self, step, metrics)

    monkeypatch.setattr(MetricWriter, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ex.run(task_grid.EXPERIMENT, config, tmp_path / "grid")
    monkeypatch.setattr(MetricWriter, "write", write)
    done = [p.relative_to(tmp_path / "grid" / "runs") for p in (tmp_path / "grid").rglob("result.json")]
    assert [str(p) for p in done] == ["parity/gru/seed0/result.json"]
    resumed = ex.run(task_grid.EXPERIMENT, config, tmp_path / "grid")
    alone = config_lib.replace(config, cells=(INDRNN,))
    (straight,) = ex.run(task_grid.EXPERIMENT, alone, tmp_path / "straight")  # the interrupted run, never stopped
    assert _timeless(resumed[-1:]) == _timeless([straight])
    assert sorted(resumed[-1]["profiles"]) == sorted(straight["profiles"]) == [0, 2, 4]
    for step in straight["profiles"]:
        np.testing.assert_array_equal(resumed[-1]["profiles"][step], straight["profiles"][step])

    rows = json.loads((tmp_path / "grid" / "results.json").read_text())
    assert [(r["task"], r["cell"]) for r in rows] == [("parity", "gru"), ("parity", INDRNN)]
    for r in rows:
        assert sorted(r["accuracy_by_length"]) == ["16", "32"] and 0 <= r["score"] <= 1
        assert r["score"] == r["accuracy_by_length"]["32"] and r["solved"] == (r["score"] >= 0.9)
    for name in ("results.csv", "results.md", "accuracy.png", "lengths.png", "gradients.png", "gradient_profiles.csv"):
        assert (tmp_path / "grid" / name).stat().st_size > 0
    assert "| parity | examples/my_cells.py:indrnn | 16: " in (tmp_path / "grid" / "results.md").read_text()


def test_bad_settings_are_refused_in_one_line_before_the_workdir(tmp_path):
    workdir = f"--workdir={tmp_path / 'run'}"
    assert "--tasks" in refusal(task_grid, workdir, "--tasks=parity,counting") and "cycle_navigation" in refusal(
        task_grid, workdir, "--tasks=counting"
    )
    assert "unknown cell 'elman'" in refusal(task_grid, workdir, "--cells=gru,elman")
    assert "--seeds" in refusal(task_grid, workdir, "--seeds=0,one")
    assert refusal(task_grid, workdir, "--test_lengths=") == "--test_lengths needs at least one value"
    line = refusal(task_grid, workdir, "--readout=flatten")
    assert line.startswith("--readout=flatten and --bidirectional read a fixed length: only mnist1d")
    line = refusal(task_grid, workdir, "--init=pytorch", "--body=residual")
    assert line.startswith("--init=pytorch applies to the plain stack of a cell (--body=plain)")
    assert not (tmp_path / "run").exists()
    with pytest.raises(
        config_lib.ConfigError, match=r"^--train_length=8 is below associative_recall's shortest \(16\)$"
    ):
        task_grid.Config(tasks=("parity", "associative_recall"), train_length=8)


def test_mnist1d_selects_on_held_out_training_examples_and_tests_the_selected_state(tmp_path):
    """--holdout: the last 100 training signals are scored at updates 0, 2 and 4; the best of those states is the
    one tested on the 1,000 test signals."""
    config = task_grid.Config(cells=("gru",), tasks=("mnist1d",), hidden=4, bidirectional=True, readout="flatten",
                              batch=50, train_steps=4, profile_every=2, log_every=2, checkpoint_every=2, holdout=100,
                              learning_rate=0.01)  # fmt: skip
    (row,) = ex.run(task_grid.EXPERIMENT, config, tmp_path)
    evaluations = [
        json.loads(line) for line in (tmp_path / "runs/mnist1d/gru/seed0/eval/metrics.jsonl").read_text().splitlines()
    ]
    assert [e["step"] for e in evaluations] == [0, 2, 4]
    best = max(evaluations, key=lambda e: e["valid_accuracy"])
    assert row["selected_step"] == best["step"] and row["valid_accuracy"] == best["valid_accuracy"]
    assert row["accuracy_by_length"].keys() == {"40"} and row["score"] == row["accuracy"] and 0 <= row["score"] <= 1


def test_holdout_applies_to_the_fixed_datasets_only(tmp_path):
    line = refusal(task_grid, f"--workdir={tmp_path / 'run'}", "--holdout=100")
    assert line == "--holdout splits a fixed training set: only mnist1d, mnist1d_shuffled have one"
    line = refusal(task_grid, f"--workdir={tmp_path / 'run'}", "--tasks=mnist1d", "--holdout=3990", "--batch=64")
    assert line == "--holdout=3990 leaves 10 of MNIST-1D's 4000 training examples, fewer than --batch=64"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("cell", ["lstm", "transformer"])
def test_every_length_read_off_prefixes_is_each_length_tested_as_its_own_string(cell):
    """--test_up_to's shortcut against its definition: strings of every length cut from the batch and run alone,
    each scored at its last well-formed step (modular arithmetic rounds an even length down)."""
    name, m = "modular_arithmetic", 5
    model = task_model.TaskModelConfig(cell, 8, True, 5, 8)
    params = task_model.init_params(model, jax.random.key(3))
    batches = [memory_tasks.TASKS[name].generate(jax.random.key(i), 64, m) for i in range(2)]
    batches = [tt.Batch(b.tokens, b.targets, b.mask) for b in batches]
    read_off = task_grid.accuracy_at_every_length(name, model, params, batches)
    for length in range(1, m + 1):
        right = []
        for b in batches:
            logits = np.asarray(task_model.apply(model, params, b.inputs[:, :length]))
            last = length - 1 - (length - 1) % 2
            right.append(np.argmax(logits[:, last], -1) == np.asarray(b.targets[:, last]))
        assert read_off[length - 1] == pytest.approx(np.mean(right), abs=1e-6)
    assert 0.05 < read_off.mean() < 0.95  # an untrained model: neither all right nor all wrong


def test_every_length_up_to_m_gives_the_score_over_lengths_beyond_t(tmp_path):
    config = task_grid.Config(cells=("gru",), tasks=("modular_arithmetic",), **{**TINY, "test_up_to": 24})
    (row,) = ex.run(task_grid.EXPERIMENT, config, tmp_path)
    every = row["accuracy_every_length"]
    assert len(every) == 24 and row["score"] == pytest.approx(np.mean(every[16:]))
    assert sorted(row["accuracy_by_length"]) == ["16", "32"]  # the listed lengths are still tested apart
    assert every[1] == every[0] and every[17] == every[16]  # modular arithmetic: an even length is its odd one
    assert "every length 17-24" in (tmp_path / "results.md").read_text()
    workdir = f"--workdir={tmp_path / 'run'}"
    line = refusal(task_grid, workdir, "--tasks=parity,copy", "--test_up_to=80")
    assert line == "--test_up_to reads every prefix's answer: only parity, modular_arithmetic, cycle_navigation have " \
                   "one, not copy"  # fmt: skip
    assert refusal(task_grid, workdir, "--test_up_to=40") == "--test_up_to=40 must be above --train_length=40"
    assert not (tmp_path / "run").exists()
