"""seqjax.loop.fit: exact resumption after kill -9, NaN handling, metrics files, checkpoint mismatches."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import loop, train
from seqjax.cells import LSTMCarry

SCRIPT = Path(__file__).with_name("loop_run.py")


@pytest.fixture(autouse=True)
def _standard_promotion():
    """optax's Adam computes b ** count with an int32 count, which strict dtype promotion rejects."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def _run(workdir, num_steps, kill_at=None):
    args = [sys.executable, str(SCRIPT), str(workdir), str(num_steps)] + ([str(kill_at)] if kill_at else [])
    return subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)


def _metrics(workdir):
    return [json.loads(line) for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]


def test_killed_run_resumes_to_the_same_parameters(tmp_path):
    """A run SIGKILLed after step 12 (checkpoint at 10) and rerun equals a straight run, bit for bit."""
    straight = _run(tmp_path / "straight", 20)
    assert straight.returncode == 0, straight.stderr
    killed = _run(tmp_path / "resumed", 20, kill_at=12)
    assert killed.returncode == -9
    assert not (tmp_path / "resumed" / "final.npz").exists()
    resumed = _run(tmp_path / "resumed", 20)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout and "checkpoints/10" in resumed.stdout
    a, b = np.load(tmp_path / "straight" / "final.npz"), np.load(tmp_path / "resumed" / "final.npz")
    assert sorted(a.files) == sorted(b.files)
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name])
    steps = [m["step"] for m in _metrics(tmp_path / "resumed")]
    assert steps == [3, 6, 9, 12, 15, 18, 20]  # step 12, logged before the kill, is written once
    straight_losses = [m["loss"] for m in _metrics(tmp_path / "straight")]
    assert [m["loss"] for m in _metrics(tmp_path / "resumed")] == straight_losses
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == ["10", "15", "20"]
    assert any((tmp_path / "resumed" / "tensorboard").iterdir())


def _linear_training(skip_nonfinite=False):
    def loss_fn(params, batch, key):
        del key
        return jnp.mean(jnp.square(batch * params["w"] - 1.0)), {}

    training = train.make_training(loss_fn, train.optimizer("sgd", 0.1), skip_nonfinite=skip_nonfinite)
    return training, training.init({"w": jnp.zeros((3,))}, jax.random.key(0))


def _batch_with_nan_at(bad_step):
    def batch_fn(k):
        return jnp.full((3,), jnp.nan if k == bad_step else 1.0)

    return batch_fn


def test_nonfinite_step_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    training, state = _linear_training()
    with pytest.raises(loop.NonFiniteError, match=r"at step 7 \(batch 7\).*checkpoints/5"):
        loop.fit(training, state, _batch_with_nan_at(7), 20, tmp_path, log_every=2, checkpoint_every=5, progress=False)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["5"]
    assert [m["step"] for m in _metrics(tmp_path)] == [2, 4, 6]  # nothing from step 7 on was written


def test_skipped_nonfinite_steps_are_counted(tmp_path):
    training, state = _linear_training(skip_nonfinite=True)
    final = loop.fit(
        training,
        state,
        _batch_with_nan_at(3),
        10,
        tmp_path,
        log_every=5,
        checkpoint_every=5,
        stop_on_nonfinite=False,
        progress=False,
    )
    assert int(final.step) == 10 and bool(jnp.all(jnp.isfinite(final.params["w"])))
    assert [m["nonfinite_total"] for m in _metrics(tmp_path)] == [1.0, 1.0]


def test_checkpoint_of_another_model_is_a_one_line_error_and_changes_nothing(tmp_path):
    training, state = _linear_training()
    loop.fit(training, state, _batch_with_nan_at(-1), 5, tmp_path, log_every=5, checkpoint_every=5, progress=False)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    metrics_before = (tmp_path / "metrics.jsonl").read_text()
    other = train.make_training(lambda p, b, k: (jnp.sum(p["w"]), {}), train.optimizer("sgd", 0.1))
    with pytest.raises(ValueError, match=r"checkpoints/5 does not fit this run") as error:
        loop.fit(
            other,
            other.init({"w": jnp.zeros((4,))}, jax.random.key(0)),
            _batch_with_nan_at(-1),
            10,
            tmp_path,
            progress=False,
        )
    assert "\n" not in str(error.value)
    assert (tmp_path / "metrics.jsonl").read_text() == metrics_before
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


def test_a_finished_run_rerun_does_nothing(tmp_path):
    training, state = _linear_training()
    first = loop.fit(
        training, state, _batch_with_nan_at(-1), 6, tmp_path, log_every=3, checkpoint_every=3, progress=False
    )
    w = np.asarray(first.params["w"])
    training, state = _linear_training()
    again = loop.fit(
        training, state, _batch_with_nan_at(-1), 6, tmp_path, log_every=3, checkpoint_every=3, progress=False
    )
    np.testing.assert_array_equal(np.asarray(again.params["w"]), w)
    assert [m["step"] for m in _metrics(tmp_path)] == [3, 6]


def test_model_state_is_handed_from_step_to_step_and_checkpointed(tmp_path):
    """A stateful loss reads the previous step's model_state; a resumed run restores it, NamedTuples intact."""

    def loss_fn(params, state, batch, key):
        del key
        loss = jnp.sum(jnp.square(params["w"] - batch))
        new_state = LSTMCarry(state.hidden + 1.0, state.cell + batch)  # counts steps, sums the batches
        return loss, ({}, new_state)

    training = train.make_training(loss_fn, train.optimizer("sgd", 0.1), stateful=True)
    zeros = jnp.zeros((2,))
    start = training.init({"w": jnp.zeros((2,))}, jax.random.key(0), LSTMCarry(zeros, zeros))  # one buffer, twice
    first = loop.fit(training, start, lambda k: jnp.full((2,), float(k)), 3, tmp_path, checkpoint_every=3)
    np.testing.assert_array_equal(first.model_state.hidden, [3.0, 3.0])
    np.testing.assert_array_equal(first.model_state.cell, [3.0, 3.0])  # 0 + 1 + 2
    template = training.init({"w": jnp.zeros((2,))}, jax.random.key(0), LSTMCarry(zeros, zeros))
    resumed = loop.fit(training, template, lambda k: jnp.full((2,), float(k)), 5, tmp_path, checkpoint_every=3)
    assert isinstance(resumed.model_state, LSTMCarry)
    np.testing.assert_array_equal(resumed.model_state.hidden, [5.0, 5.0])
    np.testing.assert_array_equal(resumed.model_state.cell, [10.0, 10.0])  # 0 + 1 + 2 + 3 + 4


def test_a_resumed_run_reuses_the_compiled_step(tmp_path, caplog):
    """Restored arrays are placed like fresh ones, so resuming in the same process does not compile the step again."""
    training, state = _linear_training()
    loop.fit(training, state, _batch_with_nan_at(-1), 3, tmp_path, log_every=3, checkpoint_every=3, progress=False)
    _, state = _linear_training()
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        resumed = loop.fit(
            training, state, _batch_with_nan_at(-1), 6, tmp_path, log_every=3, checkpoint_every=3, progress=False
        )
    assert int(resumed.step) == 6
    compiled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiling jit(")]
    assert not [m for m in compiled if "train_step" in m], compiled
