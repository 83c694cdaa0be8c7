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

EVAL_JSONL = "eval.jsonl"


def read_history(path: Path) -> list[dict[str, Any]]:
    """The evaluations in ``eval.jsonl``, one per step (a step evaluated again after a resume from an
    earlier checkpoint keeps its last line), in step order."""
    if not path.exists():
        return []
    by_step = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        by_step[entry["step"]] = entry
    return [by_step[step] for step in sorted(by_step)]


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
    earlier = read_history(eval_log)
    timing = {"train_s": earlier[-1]["train_s"] if earlier else 0.0, "clock": time.perf_counter()}

    def after_step(done: int, state: train.TrainState) -> None:
        if done % steps_per_epoch == 0 or done == total_steps:
            timing["train_s"] += time.perf_counter() - timing["clock"]
            valid = evaluate_valid(state.params)
            line = {"step": done, "epoch": done / steps_per_epoch, "valid": valid, "train_s": timing["train_s"]}
            workdir.append_jsonl(eval_log, line)
            print(f"epoch {done / steps_per_epoch:.2f}: valid {describe(valid)}", flush=True)
            timing["clock"] = time.perf_counter()

    state = loop.fit(training, state, batch_fn, total_steps, out, callback=after_step, **fit_options)
    return state, read_history(eval_log)
