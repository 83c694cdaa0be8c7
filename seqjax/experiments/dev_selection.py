"""``loop.fit`` in epochs with model selection: evaluate after every epoch, keep the state with the best dev score.

The shared loop of the supervised experiments (sentiment, tagging, translation, captioning). After every
``steps_per_epoch`` updates and after the last one, ``evaluate(params)`` gives a flat dict of metrics; the
line ``{"epoch", **metrics, "train_s"}`` is written to ``<out>/eval/metrics.jsonl`` (and TensorBoard) at that
step, and when ``metrics[select]`` beats every earlier evaluation the state is saved to ``<out>/best/``
(before the line that records it, so a line never names a best state that was not kept). ``train_s`` is the
cumulative training time of the run across resumes, without the evaluations.

A rerun resumes from the latest checkpoint of ``<out>/checkpoints/``: evaluations written after it are
dropped and redone, and one missing at the end (a run killed between a checkpoint and its evaluation) is
made up, so the history always ends at the final step.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from jax.sharding import Mesh

from seqjax import loop, parallel, precision, train
from seqjax.checkpoints import Checkpointer
from seqjax.experiments.epoch_training import latest_checkpoint_step, merge_history, read_history
from seqjax.metric_writers import MetricWriter

EVAL_DIR = "eval"
BEST_DIR = "best"


class Selection(NamedTuple):
    """``state``: the final state; ``history``: one dict per evaluation, in step order, each
    ``{"step", "epoch", "train_s", **metrics}``; ``best``: the entry with the highest ``select`` metric (the
    earliest among equals)."""

    state: train.TrainState
    history: list[dict[str, Any]]
    best: dict[str, Any]


@functools.cache
def constant_rate_training(
    batch_loss: Callable[[Any], train.LossFn],
    model: Any,
    optimizer: str,
    learning_rate: float,
    clip: float,
    compute_dtype: str = "float32",
) -> train.Training:
    """The step of ``batch_loss(model)`` with ``optimizer`` at a constant ``learning_rate`` and global-norm
    clipping at ``clip`` (0: none), computing in ``compute_dtype`` (``seqjax.precision``): the recipe of the
    model-selecting experiments. Cached on its arguments, so runs in one process (a resumed one, the folds of a
    cross-validation) share its compilation."""
    schedule = train.schedule("constant", learning_rate)
    clipping = train.Clipping("global_norm", clip) if clip > 0 else train.Clipping()
    return train.make_training(
        batch_loss(model),
        train.optimizer(optimizer, schedule),
        clipping,
        learning_rate=schedule,
        compute_dtype=precision.compute_dtype(compute_dtype),
    )


def run_options(config: Any) -> dict[str, Any]:
    """``fit_selecting_best``'s how-to-run keywords from an experiment's Config: its ``log_every`` and
    ``checkpoint_every``, the mesh of ``num_devices`` for its ``batch_size``, and ``shard_params_over``."""
    return {
        "log_every": config.log_every,
        "checkpoint_every": config.checkpoint_every,
        "mesh": parallel.mesh_for(config.num_devices, config.batch_size),
        "shard_params_over": config.shard_params_over,
    }


def best_entry(history: list[dict[str, Any]], select: str) -> dict[str, Any] | None:
    """The evaluation with the highest ``select`` (the earliest among equals), or None."""
    return max(history, key=lambda h: (h[select], -h["step"]), default=None)


def fit_selecting_best(
    training: train.Training,
    state: train.TrainState,
    batch_fn: Callable[[int], Any],
    total_steps: int,
    steps_per_epoch: int,
    out: Path,
    evaluate: Callable[[Any], dict[str, float]],
    select: str,
    *,
    log_every: int = 100,
    checkpoint_every: int = 1000,
    describe: Callable[[dict[str, Any]], str] | None = None,
    mesh: Mesh | None = None,
    shard_params_over: int = 0,
) -> Selection:
    """Trains to ``total_steps`` (resuming from ``out``), evaluating and selecting after every epoch.

    Args:
      training, state, batch_fn, total_steps: as for ``loop.fit`` (``state`` is donated).
      steps_per_epoch: evaluate after every this many steps (and after the last).
      out: the claimed workdir.
      evaluate: ``params -> {name: float}``, e.g. ``{"dev_accuracy": .., "dev_loss": .., "test_accuracy": ..}``.
      select: the key of ``evaluate``'s result to maximise.
      log_every, checkpoint_every: as for ``loop.fit``.
      describe: the text of the progress line for an evaluation entry; default: every metric.
      mesh, shard_params_over: as for ``loop.fit`` (data parallel); None: one device.
    """
    (out / EVAL_DIR).mkdir(exist_ok=True)
    resume_step = latest_checkpoint_step(out)
    eval_writer = MetricWriter(out / EVAL_DIR, resume_step=resume_step + 1)  # drops evaluations past it
    best_keeper = Checkpointer(out / BEST_DIR, every=1, keep=1)
    describe = describe or (lambda entry: ", ".join(f"{k} {v:.4f}" for k, v in entry.items() if k != "epoch"))
    try:
        # Every process keeps the history itself: in a multi-process run only the primary writes the file.
        earlier, new = read_history(eval_writer.path, up_to=resume_step), []
        timing = {"train_s": earlier[-1]["train_s"] if earlier else 0.0, "clock": time.perf_counter()}
        best = best_entry(earlier, select)

        def record(done: int, state: train.TrainState) -> None:
            nonlocal best
            timing["train_s"] += time.perf_counter() - timing["clock"]
            metrics = evaluate(state.params)
            if select not in metrics:
                raise KeyError(f"evaluate() returned {sorted(metrics)}, without the selected metric {select!r}")
            line = {"epoch": done / steps_per_epoch, **metrics, "train_s": timing["train_s"]}
            if best is None or line[select] > best[select]:
                best_keeper.save(state, force=True)  # before the line that records it
                best = {"step": done, **line}
            eval_writer.write(done, line)
            new.append({"step": done, **{name: float(value) for name, value in line.items()}})  # as written
            shown = {k: v for k, v in line.items() if k != "train_s"}
            print(
                f"epoch {line['epoch']:.2f}: {describe(shown)}; best {select} {best[select]:.4f} "
                f"at epoch {best['epoch']:.2f}",
                flush=True,
            )
            timing["clock"] = time.perf_counter()

        def after_step(done: int, state: train.TrainState) -> None:
            if done % steps_per_epoch == 0 or done == total_steps:
                record(done, state)

        state = loop.fit(
            training,
            state,
            batch_fn,
            total_steps,
            out,
            log_every=log_every,
            checkpoint_every=checkpoint_every,
            callback=after_step,
            mesh=mesh,
            shard_params_over=shard_params_over,
        )
        history = merge_history(earlier, new)
        if not history or history[-1]["step"] != int(state.step):
            record(int(state.step), state)
            history = merge_history(earlier, new)
    finally:
        best_keeper.close()
        eval_writer.close()
    return Selection(state, history, best_entry(history, select))


def restore_best(out: str | Path, template: train.TrainState) -> train.TrainState:
    """The best-dev state kept in ``<out>/best/`` (``template`` gives its structure); FileNotFoundError if none."""
    checkpointer = Checkpointer(Path(out) / BEST_DIR, every=1)
    try:
        state = checkpointer.restore_latest(template)
    finally:
        checkpointer.close()
    if state is None:
        raise FileNotFoundError(f"{Path(out) / BEST_DIR / 'checkpoints'}: no checkpoint")
    return state
