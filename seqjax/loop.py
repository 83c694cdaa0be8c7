"""The training loop: resumable, reproducible, observable.

``fit`` runs ``training.step`` (jitted, the state donated) from the latest checkpoint in ``workdir``
(or from the given state) up to ``num_steps``. The batch of step k is ``batch_fn(k)`` and the step's
key is ``fold_in(state.key, k)``, so a run killed at any moment and rerun with the same command
reaches the same parameters as an uninterrupted one, bit for bit on CPU. Given a ``mesh``
(``seqjax.parallel``), the step runs data-parallel on its devices: the same steps, each batch split by rows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from seqjax import parallel
from seqjax.checkpoints import Checkpointer
from seqjax.metric_writers import MetricWriter
from seqjax.train import Training, TrainState


class NonFiniteError(RuntimeError):
    """A step produced a NaN or inf loss or gradient."""


def fit(
    training: Training,
    state: TrainState,
    batch_fn: Callable[[int], Any],
    num_steps: int,
    workdir: str | os.PathLike,
    *,
    log_every: int = 100,
    checkpoint_every: int = 1000,
    keep: int = 3,
    stop_on_nonfinite: bool = True,
    callback: Callable[[int, TrainState], None] | None = None,
    progress: bool = True,
    mesh: Mesh | None = None,
    shard_params_over: int = 0,
) -> TrainState:
    """Trains up to ``num_steps`` updates, resuming from ``workdir`` if it holds a checkpoint.

    Args:
      training: ``make_training``'s init and step.
      state: the initial state; also the template a checkpoint is restored into. Donated: do not
        use it (or arrays inside it) after the call.
      batch_fn: ``k -> batch`` for step k (a function of k alone, for exact resumption).
      num_steps: the total number of updates, counting those before a resume.
      workdir: holds ``checkpoints/``, ``metrics.jsonl`` and ``tensorboard/``.
      log_every: write metrics (and a progress line) every this many steps and at the end.
      checkpoint_every: save every this many steps and at the end; ``keep`` checkpoints are kept.
      stop_on_nonfinite: raise ``NonFiniteError`` naming the first non-finite step, without saving
        anything after it, so the last good checkpoint stays the latest. With
        ``make_training(skip_nonfinite=True)`` pass False to skip such steps and count them.
      callback: called as ``callback(k, state)`` after every step, k counting the updates done.
      progress: print a progress line at every log step.
      mesh: run data-parallel on this ``parallel.data_mesh`` (every batch leaf ``[B, ...]`` with ``B``
        divisible by its size); None: one device, as jit places it.
      shard_params_over: with a mesh, split the parameters of at least this many elements (and their
        optimizer state) over its devices (``parallel.state_shardings``); 0: replicate them all.

    Returns:
      The final state.
    """
    checkpointer = Checkpointer(workdir, checkpoint_every, keep)
    try:
        restored = checkpointer.restore_latest(state)
        if restored is not None:
            state = restored
            if progress:
                print(f"resumed from {checkpointer.directory / str(int(state.step))}", flush=True)
        if mesh is not None:
            state = parallel.place_state(state, mesh, shard_params_over)
        start = int(state.step)
        step_fn, batch_of = _step_and_batches(training, state, batch_fn, mesh, shard_params_over)
        writer = MetricWriter(workdir, resume_step=start + 1)
        reporting = _Reporting(writer, log_every, stop_on_nonfinite, callback, progress)
        try:
            state = _run(step_fn, batch_of, state, range(start, num_steps), checkpointer, reporting)
        finally:
            writer.close()
    finally:
        checkpointer.close()
    return state


class _Reporting(NamedTuple):
    """What ``fit`` does around the steps: metrics, non-finite checks, the callback, progress lines."""

    writer: MetricWriter
    log_every: int
    stop_on_nonfinite: bool
    callback: Callable[[int, TrainState], None] | None
    progress: bool


def _step_and_batches(training, state, batch_fn, mesh, shard_params_over):
    """The jitted step (state donated) and ``k -> batch`` as it feeds it: one device, or split over ``mesh``."""
    if mesh is None:
        return jax.jit(training.step, donate_argnums=0), batch_fn
    step_fn = parallel.data_parallel_step(training, mesh, state, shard_params_over)
    return step_fn, lambda k: parallel.shard_batch(batch_fn(k), mesh)


def _run(step_fn, batch_of, state, steps: range, checkpointer, reporting: _Reporting) -> TrainState:
    """Steps ``steps.start .. steps.stop - 1``, logging, checking and checkpointing as ``fit`` describes."""
    writer, log_every, stop_on_nonfinite, callback, progress = reporting
    start, num_steps = steps.start, steps.stop
    pending_nonfinite: list[jax.Array] = []
    skipped = 0
    clock, clock_step = time.perf_counter(), start
    for k in steps:
        state, metrics = step_fn(state, batch_of(k))
        done = k + 1
        pending_nonfinite.append(metrics["nonfinite"])
        at_log = done % log_every == 0 or done == num_steps
        at_checkpoint = done % checkpointer.every == 0 or done == num_steps
        if at_log or at_checkpoint:
            flags = np.asarray(jax.device_get(pending_nonfinite))
            first_step = done - len(flags)
            pending_nonfinite = []
            if flags.any() and stop_on_nonfinite:
                bad = first_step + int(np.flatnonzero(flags)[0])
                raise NonFiniteError(
                    f"non-finite loss or gradients at step {bad} (batch {bad}); stopped without saving, "
                    f"the last good checkpoint is {checkpointer.directory / str(checkpointer.latest_step())}"
                )
            skipped += int(flags.sum())
        if at_log:
            values = {name: float(v) for name, v in jax.device_get(metrics).items()}
            now = time.perf_counter()
            values["steps_per_s"] = (done - clock_step) / max(now - clock, 1e-9)
            values["nonfinite_total"] = float(skipped)
            clock, clock_step = now, done
            writer.write(done, values)
            if progress:
                print(
                    f"step {done}/{num_steps}  loss {values['loss']:.4g}  grad_norm {values['grad_norm']:.3g}  "
                    f"{values['steps_per_s']:.1f} steps/s" + (f"  skipped {skipped}" if skipped else ""),
                    flush=True,
                )
        if at_checkpoint:
            checkpointer.save(state, force=True)
        if callback is not None:
            before = time.perf_counter()
            callback(done, state)
            clock += time.perf_counter() - before  # steps/s counts training steps only, not e.g. evaluations
    return state
