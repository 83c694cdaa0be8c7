"""seqjax.runner.fit: evaluations and selection, early stopping, NaN handling, metrics files, checkpoint
mismatches, resuming a finished run. Exact resumption after kill -9 at any moment: tests/test_reliability.py."""

import json
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import runner, train, workdir
from seqjax.cells import LSTMCarry


@pytest.fixture(autouse=True)
def _standard_promotion():
    """optax's Adam computes b ** count with an int32 count, which strict dtype promotion rejects."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def _metrics(workdir):
    return [json.loads(line) for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]


def _linear_training(skip_nonfinite=False):
    def loss_fn(params, batch, key):
        del key
        return jnp.mean(jnp.square(batch * params["w"] - 1.0)), {}

    training = train.make_training(loss_fn, train.optimizer("sgd", 0.1), skip_nonfinite=skip_nonfinite)
    return training, training.init({"w": jnp.zeros((3,))}, jax.random.key(0))


def _fit_linear(workdir, num_steps, nan_at=-1, **options):
    """The linear model's run (``_linear_training``) with a NaN batch at ``nan_at``, quietly."""
    training, state = _linear_training(skip_nonfinite=not options.get("stop_on_nonfinite", True))
    return runner.fit(training, state, _batch_with_nan_at(nan_at), num_steps, workdir,
                      options=runner.Options(progress=False, **options))  # fmt: skip


def _batch_with_nan_at(bad_step):
    def batch_fn(k):
        return jnp.full((3,), jnp.where(k == bad_step, jnp.nan, 1.0))  # k may be traced (a scan of updates)

    return batch_fn


def test_nonfinite_step_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(runner.NonFiniteError, match=r"^update 8 \(batch 7\) gave a non-finite .*checkpoints/5$"):
        _fit_linear(tmp_path, 20, 7, log_every=2, checkpoint_every=5)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["5"]
    assert [m["step"] for m in _metrics(tmp_path)] == [2, 4, 6]  # nothing from step 7 on was written


def test_parameters_that_overflow_stop_the_run_though_loss_and_gradient_are_finite(tmp_path):
    def loss_fn(params, batch, key):  # value 0, gradient ``batch``: w grows by 1e38 an update, 4e38 overflows
        return jnp.sum(batch * params["w"] - jax.lax.stop_gradient(batch * params["w"])), {}

    training = train.make_training(loss_fn, train.optimizer("sgd", 1e38))
    state = training.init({"w": jnp.zeros((1,))}, jax.random.key(0))
    with pytest.raises(runner.NonFiniteError, match=r"^update 4 \(batch 3\) .*checkpoints/3$"):
        runner.fit(training, state, lambda k: -jnp.ones(1), 6, tmp_path,
                   options=runner.Options(progress=False, checkpoint_every=3))  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["3"]


@pytest.mark.parametrize("steps_per_call", [1, 4])
def test_logged_updates_carry_the_parameter_and_update_norms(tmp_path, steps_per_call):
    """The linear run: w_k = 1 - r^k in each of 3 components, r = 1 - 0.1 * 2/3 (SGD 0.1 on mean((w - 1)^2)), so
    ||w_k|| = sqrt(3) (1 - r^k) and ||w_k - w_{k-1}|| = sqrt(3) r^(k-1) (1 - r), on the updates logged (every 3rd and
    the last), whether the runner calls one update or a scan of several at a time."""
    _fit_linear(tmp_path, 7, log_every=3, steps_per_call=steps_per_call)
    r = 1 - 0.1 * 2 / 3
    logged = _metrics(tmp_path)
    assert [m["step"] for m in logged] == [3, 6, 7]
    for m in logged:
        k = m["step"]
        np.testing.assert_allclose(m["param_norm"], np.sqrt(3) * (1 - r**k), rtol=1e-5)
        np.testing.assert_allclose(m["update_norm"], np.sqrt(3) * r ** (k - 1) * (1 - r), rtol=1e-5)


def test_skipped_nonfinite_steps_are_counted(tmp_path):
    final = _fit_linear(tmp_path, 10, 3, log_every=5, checkpoint_every=5, stop_on_nonfinite=False).state
    assert int(final.step) == 10 and bool(jnp.all(jnp.isfinite(final.params["w"])))
    assert [m["nonfinite_total"] for m in _metrics(tmp_path)] == [1.0, 1.0]


def test_checkpoint_of_another_model_is_a_one_line_error_and_changes_nothing(tmp_path):
    _fit_linear(tmp_path, 5, -1, log_every=5, checkpoint_every=5)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    metrics_before = (tmp_path / "metrics.jsonl").read_text()
    other = train.make_training(lambda p, b, k: (jnp.sum(p["w"]), {}), train.optimizer("sgd", 0.1))
    with pytest.raises(ValueError, match=r"checkpoints/5 does not fit this run") as error:
        runner.fit(
            other,
            other.init({"w": jnp.zeros((4,))}, jax.random.key(0)),
            _batch_with_nan_at(-1),
            10,
            tmp_path,
            options=runner.Options(progress=False),
        )
    assert "\n" not in str(error.value)
    assert (tmp_path / "metrics.jsonl").read_text() == metrics_before
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


def test_a_finished_run_rerun_does_nothing(tmp_path):
    first = _fit_linear(tmp_path, 6, log_every=3, checkpoint_every=3).state
    w = np.asarray(first.params["w"])
    events = sorted(p.name for p in (tmp_path / "tensorboard").iterdir())
    again = _fit_linear(tmp_path, 6, log_every=3, checkpoint_every=3).state
    np.testing.assert_array_equal(np.asarray(again.params["w"]), w)
    assert [m["step"] for m in _metrics(tmp_path)] == [3, 6]
    assert sorted(p.name for p in (tmp_path / "tensorboard").iterdir()) == events  # no new events file


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
    first = runner.fit(
        training, start, lambda k: jnp.full((2,), float(k)), 3, tmp_path, options=runner.Options(checkpoint_every=3)
    ).state
    np.testing.assert_array_equal(first.model_state.hidden, [3.0, 3.0])
    np.testing.assert_array_equal(first.model_state.cell, [3.0, 3.0])  # 0 + 1 + 2
    template = training.init({"w": jnp.zeros((2,))}, jax.random.key(0), LSTMCarry(zeros, zeros))
    resumed = runner.fit(
        training, template, lambda k: jnp.full((2,), float(k)), 5, tmp_path, options=runner.Options(checkpoint_every=3)
    ).state
    assert isinstance(resumed.model_state, LSTMCarry)
    np.testing.assert_array_equal(resumed.model_state.hidden, [5.0, 5.0])
    np.testing.assert_array_equal(resumed.model_state.cell, [10.0, 10.0])  # 0 + 1 + 2 + 3 + 4


def test_a_resumed_run_reuses_the_compiled_step(tmp_path, caplog):
    """Restored arrays are placed like fresh ones, so resuming in the same process does not compile the step again."""
    training, state = _linear_training()
    options = runner.Options(log_every=3, checkpoint_every=3, progress=False)
    runner.fit(training, state, _batch_with_nan_at(-1), 3, tmp_path, options=options)
    _, state = _linear_training()
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        resumed = runner.fit(training, state, _batch_with_nan_at(-1), 6, tmp_path, options=options).state
    assert int(resumed.step) == 6
    compiled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiling jit(")]
    assert not [m for m in compiled if "train_step" in m], compiled


# -- evaluations, the best state, early stopping -------------------------------------------------------------------

SCORES = {0: 0.1, 2: 0.5, 4: 0.4, 6: 0.6, 8: 0.55, 10: 0.58, 12: 0.9, 14: 0.2}  # a scripted dev score per step


def _scripted_evaluation(**options):
    """Evaluates the score ``SCORES`` lists for the state's step (read from the parameters: w counts the steps)."""

    def evaluate(params):
        step = round(float(params["w"][0]))
        return {"score": SCORES[step], "profile": [step, 2 * step]}

    return runner.Evaluation(evaluate, **options)


def _counting_training():
    """w <- w + 1 at every update: the parameters tell the step they were made at."""
    training = train.make_training(lambda p, b, k: (-jnp.sum(p["w"]), {}), train.optimizer("sgd", 1.0))
    return training, training.init({"w": jnp.zeros((3,))}, jax.random.key(0))


def _read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_evaluations_follow_the_schedule_and_the_best_state_is_kept(tmp_path):
    """every=2, at=(0,): steps 0, 2, .., 10 and the last (11); the best score (0.6, step 6) is the state kept."""
    training, state = _counting_training()
    evaluation = _scripted_evaluation(every=2, at=(0,), steps_per_epoch=2, select="score")
    SCORES[11] = 0.3
    fit = runner.fit(training, state, lambda k: 0.0, 11, tmp_path, evaluation=evaluation,
                     options=runner.Options(progress=False, checkpoint_every=100))  # fmt: skip
    assert [h["step"] for h in fit.history] == [0, 2, 4, 6, 8, 10, 11] and fit.stopped_at is None
    assert [h["epoch"] for h in fit.history] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.5]
    assert fit.best["step"] == 6 and fit.best["score"] == 0.6
    assert fit.history[3]["profile"] == [6.0, 12.0]  # lists are kept (and not sent to TensorBoard)
    assert _read_lines(tmp_path / "eval" / "metrics.jsonl") == fit.history == runner.read_history(tmp_path)
    best = runner.restore_best(tmp_path, _counting_training()[1])
    assert int(best.step) == 6 and float(best.params["w"][0]) == pytest.approx(6.0)
    # every evaluation is followed by a checkpoint of the same step (and the last step has one): resumes start there
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir())[-3:] == [8, 10, 11]


def test_early_stopping_after_patience_evaluations_without_a_new_best(tmp_path):
    """Scores 0.1, 0.5, 0.4, 0.6 (best, step 6), 0.55, 0.58: with patience 2 the run stops at step 10, never
    reaching the 0.9 of step 12; a rerun of the same call trains no further and reports the same."""
    evaluation = _scripted_evaluation(every=2, at=(0,), select="score", patience=2)
    options = runner.Options(progress=False, checkpoint_every=100)
    training, state = _counting_training()
    fit = runner.fit(training, state, lambda k: 0.0, 14, tmp_path, evaluation=evaluation, options=options)
    assert fit.stopped_at == 10 and int(fit.state.step) == 10 and fit.best["step"] == 6
    assert [h["step"] for h in fit.history] == [0, 2, 4, 6, 8, 10]
    again = runner.fit(training, _counting_training()[1], lambda k: 0.0, 14, tmp_path, evaluation=evaluation,
                       options=options)  # fmt: skip
    assert again.stopped_at == 10 and int(again.state.step) == 10 and again.history == fit.history
    assert len(_read_lines(tmp_path / "eval" / "metrics.jsonl")) == 6
    # minimising: the lowest score is best; 0.1 at step 0 is never beaten, so patience 2 stops at step 4
    training, state = _counting_training()
    lowest = _scripted_evaluation(every=2, at=(0,), select="score", mode="min", patience=2)
    low = runner.fit(training, state, lambda k: 0.0, 14, tmp_path / "min", evaluation=lowest, options=options)
    assert low.stopped_at == 4 and low.best["step"] == 0


def test_one_writer_per_workdir(tmp_path):
    with workdir.lock(tmp_path / "run"):
        with pytest.raises(workdir.WorkdirError, match=r"is in use by another run \(process \d+\)"):
            with workdir.lock(tmp_path / "run"):
                pass
    with workdir.lock(tmp_path / "run"):  # released when its holder is done (or dies)
        pass
