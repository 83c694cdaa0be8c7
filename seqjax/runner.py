"""The one training runner: every experiment that trains by gradient steps runs through ``fit``.

``fit(training, state, batches, num_steps, workdir, evaluation=..., options=...)`` runs ``training.step``
(jitted, the state donated) from the latest checkpoint in ``workdir`` (or from ``state``) up to ``num_steps``
updates. The batch of step k is ``batches(k)`` and the step's key ``fold_in(state.key, k)``, so a run is a
function of its step count: a run killed at any moment and started again with the same call reaches the
same parameters as one that was never interrupted, bit for bit on CPU. It writes into ``workdir``:

    checkpoints/       every ``checkpoint_every`` updates, after every evaluation and after the last update
    metrics.jsonl      every ``log_every`` updates: {"step", "loss", "grad_norm", "param_norm", ...}
    tensorboard/       the same scalars
    eval/metrics.jsonl one line per evaluation: {"step", "epoch", **metrics, "train_s"} (and eval/tensorboard/)
    best/checkpoints/  the state with the best ``evaluation.select`` so far

What it guarantees, by construction:

- **Evaluations are never lost or repeated.** The evaluation of step s is written before the checkpoint of
  step s; a resume from step s keeps the lines up to s and drops the later ones, which are redone; a best
  state saved after s is dropped too, so ``best/`` always holds the best of the kept lines.
- **A non-finite step stops the run** (``NonFiniteError``, one line naming the update as the progress line
  counts it) before anything after it is saved: every checkpoint holds finite parameters, so keeping the latest
  ``keep`` never deletes the last good one.
- **A damaged checkpoint is never trained on.** One that cannot be read or fails the checksums written with it
  is set aside (``seqjax.checkpoints``) and the run resumes from the newest good one.
- ``train_s`` is the training time of the run across resumes, evaluations not counted.

Given ``options.mesh`` (``seqjax.parallel``) the steps run data-parallel: the same steps, each batch split by
rows. With ``options.steps_per_call = n > 1`` one jitted call runs up to n steps in a ``lax.scan``, drawing each
batch inside it (``batches`` must then be traceable in a traced step number): for small models, whose steps
cost less than a call from Python.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from seqjax import checkpoints, parallel
from seqjax.checkpoints import Checkpointer
from seqjax.metric_writers import MetricWriter
from seqjax.train import Training, TrainState

EVAL_DIR = "eval"
BEST_DIR = "best"


class NonFiniteError(RuntimeError):
    """An update produced a NaN or inf loss, gradient or parameter."""


class Evaluation(NamedTuple):
    """What ``fit`` evaluates during a run, when, and what it keeps.

    Attributes:
      evaluate: ``params -> {name: value}``; numbers (and lists of numbers, e.g. a gradient profile).
      every: evaluate after every this many updates (an epoch); 0: not periodically.
      at: and after these updates (0: before the first one).
      at_end: and after the last update.
      steps_per_epoch: gives each line ``"epoch": step / steps_per_epoch``; 0: no epoch.
      select: keep the state of the best ``select`` so far in ``best/``; "": keep none.
      mode: ``"max"`` or ``"min"``: what best means.
      patience: stop once this many evaluations in a row have not improved on the best; 0: never stop early.
      describe: the text of an evaluation's progress line; default: every scalar.
    """

    evaluate: Callable[[Any], Mapping[str, Any]]
    every: int = 0
    at: tuple[int, ...] = ()
    at_end: bool = True
    steps_per_epoch: int = 0
    select: str = ""
    mode: str = "max"
    patience: int = 0
    describe: Callable[[Mapping[str, Any]], str] | None = None

    def due(self, step: int, num_steps: int) -> bool:
        return (
            step in self.at
            or (self.every > 0 and step > 0 and step % self.every == 0)
            or (self.at_end and step == num_steps)
        )


class Options(NamedTuple):
    """How ``fit`` runs (never what it computes).

    Attributes:
      log_every: write the step's metrics (and a progress line) every this many updates and after the last.
      checkpoint_every: save every this many updates (and after every evaluation and the last update);
        0: never save, and never resume.
      keep: how many of the latest checkpoints to keep.
      steps_per_call: updates per jitted call (``lax.scan`` inside; see the module docstring).
      progress: print progress lines.
      mesh: run data-parallel on this ``parallel.data_mesh`` (batch leaves ``[B, ...]``, ``B`` divisible by its
        size); None: one device.
      shard_params_over: with a mesh, split the parameters of at least this many elements over it.
      stop_on_nonfinite: raise ``NonFiniteError`` at a non-finite update; False: go on (with
        ``make_training(skip_nonfinite=True)``, such updates are skipped and counted).
      tensorboard: write TensorBoard events beside the JSONL files.
    """

    log_every: int = 100
    checkpoint_every: int = 1000
    keep: int = 3
    steps_per_call: int = 1
    progress: bool = True
    mesh: Mesh | None = None
    shard_params_over: int = 0
    stop_on_nonfinite: bool = True
    tensorboard: bool = True


class Fit(NamedTuple):
    """``fit``'s result: the final state, every evaluation in step order, the best one (None without a
    ``select``) and the update at which early stopping ended the run (None if it did not)."""

    state: TrainState
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    stopped_at: int | None


def fit(
    training: Training,
    state: TrainState,
    batches: Callable[[Any], Any],
    num_steps: int,
    workdir: str | os.PathLike,
    *,
    evaluation: Evaluation | None = None,
    options: Options | None = None,
    callback: Callable[[int, TrainState], None] | None = None,
) -> Fit:
    """Trains to ``num_steps`` updates in ``workdir`` (resuming from its latest checkpoint), evaluating as asked.

    Args:
      training: ``train.make_training``'s init and step.
      state: the initial state, and the template a checkpoint is restored into. Donated: do not use it (or
        arrays inside it) after the call.
      batches: ``k -> batch`` for update k, a function of k alone.
      num_steps: the total number of updates, counting those before a resume.
      workdir: the run's directory (see the module docstring for what goes there).
      evaluation: what to evaluate and when; None: nothing.
      options: how to run.
      callback: ``callback(k, state)`` after every update k (counting from 1) that ends a call: a hook for
        fault injection in tests.

    Returns:
      The ``Fit``.
    """
    out, options = Path(workdir), options or Options()
    out.mkdir(parents=True, exist_ok=True)
    checkpointer = Checkpointer(out, options.checkpoint_every, options.keep) if options.checkpoint_every else None
    best_keeper = Checkpointer(out / BEST_DIR, every=1, keep=2) if evaluation and evaluation.select else None
    try:
        restored = checkpointer.restore_latest(state) if checkpointer else None
        if restored is not None:
            state = restored
            if options.progress:
                print(f"resumed from {checkpointer.directory / str(int(state.step))}", flush=True)
        elif checkpointer is not None and checkpointer.set_aside:
            print("no readable checkpoint is left: training from update 0", file=sys.stderr, flush=True)
        if options.mesh is not None:
            state = parallel.place_state(state, options.mesh, options.shard_params_over)
        start = int(state.step)
        if best_keeper is not None:
            best_keeper.drop_after(start if restored is not None else -1)  # states of evaluations to be redone
        run = _Run(training, batches, num_steps, out, evaluation, options, checkpointer, best_keeper, callback,
                   resumed=restored is not None, start=start)  # fmt: skip
        try:
            state = run.train(state)
        except BaseException:
            with contextlib.suppress(OSError):  # a full disk fails the closing flushes too: report the first error
                run.close()
            raise
        run.close()
    finally:
        for keeper in (checkpointer, best_keeper):
            if keeper is not None:
                with contextlib.suppress(OSError):
                    keeper.close()
    return Fit(state, run.history, run.best, run.stopped_at)


class _Run:
    """One call of ``fit``: its writers, its evaluation history and the loop over updates."""

    def __init__(self, training, batches, num_steps, out, evaluation, options, checkpointer, best_keeper,
                 callback, resumed: bool, start: int):  # fmt: skip
        self.num_steps, self.evaluation, self.options = num_steps, evaluation, options
        self.checkpointer, self.best_keeper, self.callback = checkpointer, best_keeper, callback
        self.step_fn = step_function(training, batches, options, num_steps)
        self.metrics = MetricWriter(out, resume_step=start + 1 if resumed else 0, tensorboard=options.tensorboard)
        self.history: list[dict[str, Any]] = []
        self.best, self.stopped_at, self.train_s = None, None, 0.0
        if evaluation is not None:
            (out / EVAL_DIR).mkdir(exist_ok=True)
            self.evals = MetricWriter(
                out / EVAL_DIR, resume_step=start + 1 if resumed else 0, tensorboard=options.tensorboard
            )
            self.history = read_history(out, up_to=start) if resumed else []
            self.best = best_entry(self.history, evaluation.select, evaluation.mode)
            self.train_s = self.history[-1]["train_s"] if self.history else 0.0
            self.stopped_at = _early_stop(self.history, self.best, evaluation.patience)
        self.skipped = 0

    def close(self) -> None:
        self.metrics.close()
        if self.evaluation is not None:
            self.evals.close()

    def train(self, state: TrainState) -> TrainState:
        done = int(state.step)
        if self._evaluation_due(done) and done not in {h["step"] for h in self.history}:
            self._evaluate(state)  # before the first update, or a resume whose evaluation is missing
        clock, clock_step, pending = time.perf_counter(), done, []
        while done < self.num_steps and self.stopped_at is None:
            n = self._call_length(done)
            state, metrics = self.step_fn(state, done, n)
            pending.append(metrics)
            done += n
            events = self._events(done - n, done)
            if events or done == self.num_steps:
                host = jax.device_get(pending)  # waits for the updates
                elapsed = time.perf_counter() - clock
                self.train_s += elapsed
                self._check_and_log(host, clock_step, elapsed)
                pending, clock_step = [], done
                if "evaluate" in events:
                    self._evaluate(state)
                if self.checkpointer is not None and (events - {"log"} or done == self.num_steps):
                    self.checkpointer.save(state, force=True)  # after the evaluation of the same update
                clock = time.perf_counter()
            if self.callback is not None:
                self.callback(done, state)
        if self.evaluation is not None and self.evaluation.at_end and self.stopped_at is None:
            if not self.history or self.history[-1]["step"] != done:
                self._evaluate(state)  # a complete run whose last evaluation was never written
        return state

    # -------------------------------------------------------------------------------------------- steps

    def _call_length(self, done: int) -> int:
        """Updates in the next call: up to ``steps_per_call``, never past an evaluation, checkpoint or the end."""
        n = min(self.options.steps_per_call, self.num_steps - done)
        for k in range(done + 1, done + n):
            if self._events(k - 1, k) - {"log"}:
                return k - done
        return n

    def _events(self, before: int, done: int) -> set[str]:
        """What is due after update ``done`` (a call covered ``before + 1 .. done``)."""
        events = set()
        if any(k % self.options.log_every == 0 for k in range(before + 1, done + 1)):
            events.add("log")
        if self.checkpointer is not None and done % self.checkpointer.every == 0:
            events.add("checkpoint")
        if self._evaluation_due(done):
            events.add("evaluate")
        return events

    def _evaluation_due(self, step: int) -> bool:
        return self.evaluation is not None and self.evaluation.due(step, self.num_steps)

    def _check_and_log(self, host: list[dict], first: int, elapsed: float) -> None:
        """Stops at the first non-finite update among ``host`` (the metrics of the updates after ``first``), then
        writes the metrics of every logged update among them."""
        stacked = {name: np.concatenate([np.reshape(m[name], (-1,)) for m in host]) for name in host[0]}
        flags = stacked["nonfinite"] > 0
        if flags.any() and self.options.stop_on_nonfinite:
            update = first + 1 + int(np.flatnonzero(flags)[0])
            latest = self.checkpointer.latest_step() if self.checkpointer is not None else None
            kept = f"the last checkpoint is {self.checkpointer.directory / str(latest)}" if latest is not None else (
                "no checkpoint was saved")  # fmt: skip
            raise NonFiniteError(
                f"update {update} (batch {update - 1}) gave a non-finite loss, gradient or parameter: stopped; {kept}"
            )
        self.skipped += int(flags.sum())
        last = first + len(flags)
        for offset in range(len(flags)):
            step = first + 1 + offset
            if step % self.options.log_every == 0 or step == last == self.num_steps:
                values = {name: float(v[offset]) for name, v in stacked.items()}
                values["steps_per_s"] = (last - first) / max(elapsed, 1e-9)
                values["nonfinite_total"] = float(self.skipped)
                self.metrics.write(step, values)
                if self.options.progress:
                    print(
                        f"step {step}/{self.num_steps}  loss {values['loss']:.4g}  grad_norm "
                        f"{values['grad_norm']:.3g}  {values['steps_per_s']:.1f} steps/s"
                        + (f"  skipped {self.skipped}" if self.skipped else ""),
                        flush=True,
                    )

    # -------------------------------------------------------------------------------------------- evaluation

    def _evaluate(self, state: TrainState) -> None:
        evaluation, step = self.evaluation, int(state.step)
        metrics = {name: _plain(value) for name, value in evaluation.evaluate(state.params).items()}
        if evaluation.select and evaluation.select not in metrics:
            raise KeyError(f"evaluate() returned {sorted(metrics)}, without the selected metric {evaluation.select!r}")
        line = {**({"epoch": step / evaluation.steps_per_epoch} if evaluation.steps_per_epoch else {}), **metrics,
                "train_s": self.train_s}  # fmt: skip
        if evaluation.select and _better(line[evaluation.select], self.best, evaluation):
            self.best_keeper.save(state, force=True)  # before the line that records it
            self.best = {"step": step, **line}
        self.evals.write(step, line)
        self.history.append({"step": step, **line})
        if evaluation.select:
            self.stopped_at = _early_stop(self.history, self.best, evaluation.patience)
        if self.options.progress:
            print(self._describe(line), flush=True)

    def _describe(self, line: dict[str, Any]) -> str:
        evaluation = self.evaluation
        shown = {k: v for k, v in line.items() if k not in ("epoch", "train_s")}
        text = evaluation.describe(shown) if evaluation.describe else ", ".join(
            f"{k} {v:.4f}" for k, v in shown.items() if isinstance(v, (int, float)))  # fmt: skip
        head = f"epoch {line['epoch']:.2f}" if "epoch" in line else f"step {self.history[-1]['step']}"
        if evaluation.select and self.best is not None:
            where = f"epoch {self.best['epoch']:.2f}" if "epoch" in self.best else f"step {self.best['step']}"
            text += f"; best {evaluation.select} {self.best[evaluation.select]:.4f} at {where}"
        if self.stopped_at is not None:
            text += f"; no better for {evaluation.patience} evaluations: stopping early"
        return f"{head}: {text}"


def _plain(value: Any) -> Any:
    """A metric as JSON holds it: a float, or a (nested) list of floats for an array."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    array = np.asarray(value, dtype=np.float64)
    return float(array) if array.ndim == 0 else array.tolist()


def _better(value: float, best: dict | None, evaluation: Evaluation) -> bool:
    if best is None:
        return True
    return value > best[evaluation.select] if evaluation.mode == "max" else value < best[evaluation.select]


def _early_stop(history: list[dict], best: dict | None, patience: int) -> int | None:
    """The step at which early stopping ends the run: the ``patience``-th evaluation after the best; or None."""
    if patience < 1 or best is None:
        return None
    after = [h["step"] for h in history if h["step"] > best["step"]]
    return after[patience - 1] if len(after) >= patience else None


def best_entry(history: list[dict[str, Any]], select: str, mode: str = "max") -> dict[str, Any] | None:
    """The evaluation with the best ``select`` (the earliest among equals), or None."""
    if not select or not history:
        return None
    sign = 1 if mode == "max" else -1
    return max(history, key=lambda h: (sign * h[select], -h["step"]))


def read_history(workdir: str | os.PathLike, up_to: float = math.inf) -> list[dict[str, Any]]:
    """The evaluations of ``workdir`` (``eval/metrics.jsonl``) at steps ``<= up_to``, in step order, one per step
    (a later line for a step replaces an earlier one); a torn last line is skipped."""
    path = Path(workdir) / EVAL_DIR / "metrics.jsonl"
    if not path.exists():
        return []
    by_step = {}
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry["step"] <= up_to:
            by_step[entry["step"]] = entry
    return [by_step[step] for step in sorted(by_step)]


def restore_best(workdir: str | os.PathLike, template: TrainState) -> TrainState:
    """The best state kept in ``<workdir>/best/`` (``template`` gives its structure); ``FileNotFoundError`` if none,
    ``checkpoints.DamagedCheckpoint`` if it cannot be read back whole (never an older state in its place)."""
    return checkpoints.restore(Path(workdir) / BEST_DIR, template, fallback=False)


def step_function(training: Training, batches: Callable[[Any], Any], options: Options, num_steps: int):
    """``(state, done, n) -> (state, metrics)``: ``n`` updates from update ``done``, jitted with the state donated.

    One update per call: ``training.step`` on ``batches(done)`` (placed on the mesh, if any); its metrics are
    scalars. Several: a ``lax.scan`` drawing ``batches(step)`` inside; its metrics are stacked ``[n]``. Either way
    an update computes the diagnostics (``train.make_training``'s ``diagnose``) only if its metrics will be logged:
    every ``log_every``-th update and the last.
    """
    mesh = options.mesh

    def logged(update: int) -> bool:  # update: the count after it, 1-based
        return (update % options.log_every == 0) | (update == num_steps)

    if options.steps_per_call == 1:
        if mesh is None:
            step = jax.jit(training.step, donate_argnums=0)
            return lambda state, done, n: step(state, batches(done), np.bool_(logged(done + 1)))
        step = None

        def one(state, done, n):
            nonlocal step
            if step is None:  # the layout follows the state, placed by fit
                step = parallel.data_parallel_step(training, mesh, state, options.shard_params_over)
            return step(state, parallel.shard_batch(batches(done), mesh), np.bool_(logged(done + 1)))

        return one

    # The run's length is an argument, not a constant of the program: a longer rerun compiles the same program.
    @functools.partial(jax.jit, donate_argnums=0, static_argnums=1)
    def segment(state: TrainState, n: int, last: jax.Array):
        def body(state, _):
            batch = batches(state.step)
            if mesh is not None:  # as shard_batch lays a batch out: rows split, scalars (a window's index) replicated
                batch = jax.tree.map(
                    lambda x: jax.lax.with_sharding_constraint(x, parallel.leaf_sharding(x, mesh)), batch
                )
            update = state.step + 1
            return training.step(state, batch, (update % options.log_every == 0) | (update == last))

        return jax.lax.scan(body, state, None, length=n)

    return lambda state, done, n: segment(state, n, np.int32(num_steps))
