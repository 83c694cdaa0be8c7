"""``loop.fit`` in epochs with a validation pass after each: the language-model experiments' common loop.

After every ``steps_per_epoch`` updates (and after the last one) the validation metrics are computed and
appended to ``<workdir>/eval.jsonl`` as ``{"step", "epoch", "valid", "train_s"}``; ``train_s`` is the
cumulative training time of the run, across resumes, without the evaluations.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seqjax import loop, train, workdir
from seqjax.checkpoints import Checkpointer

EVAL_JSONL = "eval.jsonl"


def read_history(path: Path, up_to: float = float("inf")) -> list[dict[str, Any]]:
    """The evaluations in ``eval.jsonl`` (or ``eval/metrics.jsonl``) at steps ``<= up_to``, one per step (a step
    evaluated again after a resume from an earlier checkpoint keeps its last line), in step order."""
    if not path.exists():
        return []
    return merge_history([json.loads(line) for line in path.read_text().splitlines()], up_to=up_to)


def merge_history(*entries: list[dict[str, Any]], up_to: float = float("inf")) -> list[dict[str, Any]]:
    """One entry per step from ``entries`` in order (a later entry for a step replaces an earlier one), sorted."""
    by_step = {entry["step"]: entry for group in entries for entry in group if entry["step"] <= up_to}
    return [by_step[step] for step in sorted(by_step)]


def latest_checkpoint_step(out: Path) -> int:
    """The step of the latest checkpoint in ``out`` (0 if none): where a rerun resumes."""
    probe = Checkpointer(out, every=1)
    try:
        return probe.latest_step() or 0
    finally:
        probe.close()


def fit_epochs(
    training: train.Training,
    state: train.TrainState,
    batch_fn: Callable[[int], Any],
    total_steps: int,
    steps_per_epoch: int,
    out: Path,
    evaluate_valid: Callable[[Any], dict[str, float]],
    describe: Callable[[dict[str, float]], str],
    **fit_options: Any,
) -> tuple[train.TrainState, list[dict[str, Any]]]:
    """Trains to ``total_steps`` (resuming from ``out``), evaluating ``evaluate_valid(params)`` every epoch.

    Returns the final state and the whole evaluation history (``read_history``). ``describe`` turns a
    validation result into the text of the progress line; ``fit_options`` go to ``loop.fit``.
    """
    eval_log = out / EVAL_JSONL
    # Every process keeps the history itself: in a multi-process run only the primary writes the file.
    earlier, new = read_history(eval_log, up_to=latest_checkpoint_step(out)), []
    timing = {"train_s": earlier[-1]["train_s"] if earlier else 0.0, "clock": time.perf_counter()}

    def after_step(done: int, state: train.TrainState) -> None:
        if done % steps_per_epoch == 0 or done == total_steps:
            timing["train_s"] += time.perf_counter() - timing["clock"]
            valid = evaluate_valid(state.params)
            line = {"step": done, "epoch": done / steps_per_epoch, "valid": valid, "train_s": timing["train_s"]}
            workdir.append_jsonl(eval_log, line)
            new.append(line)
            print(f"epoch {done / steps_per_epoch:.2f}: valid {describe(valid)}", flush=True)
            timing["clock"] = time.perf_counter()

    state = loop.fit(training, state, batch_fn, total_steps, out, callback=after_step, **fit_options)
    return state, merge_history(earlier, new)
