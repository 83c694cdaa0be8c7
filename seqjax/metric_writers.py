"""Per-step metrics: ``<workdir>/metrics.jsonl`` (one JSON object per logged step) and TensorBoard events."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

from tensorboardX import SummaryWriter

from seqjax import distributed, workdir


class MetricWriter:
    """Appends ``{"step": k, name: value, ...}`` lines to metrics.jsonl, and the scalars among them to TensorBoard.

    Args:
      directory: the run's workdir; TensorBoard events go to ``<directory>/tensorboard``.
      resume_step: the step a resumed run restarts from. Lines for steps at or after it (written by
        the interrupted run after its last checkpoint) are dropped, so the file has each step once.
      tensorboard: also write TensorBoard events (each scalar an event: for thousands of steps, seconds).

    In a multi-process run only the primary process writes; on the others ``write`` does nothing.
    """

    def __init__(self, directory: str | os.PathLike, resume_step: int = 0, tensorboard: bool = True):
        self.path = Path(directory) / "metrics.jsonl"
        self._writing = distributed.is_primary()
        if not self._writing:
            return
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines() if _step_of(line) < resume_step]
            workdir.write_atomic(self.path, "".join(line + "\n" for line in kept))
        self._file = open(self.path, "a")  # kept open for the run; close() closes it
        self._tensorboard = None
        self._open_tensorboard = None
        if tensorboard:  # opened at the first scalar: a rerun of a finished run adds no events file
            events = str(Path(directory) / "tensorboard")
            self._open_tensorboard = lambda: SummaryWriter(events, purge_step=resume_step or None)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self._writing:
            return
        values = {name: value if isinstance(value, (list, int)) else float(value) for name, value in metrics.items()}
        self._file.write(json.dumps({"step": step, **values}) + "\n")
        self._file.flush()
        if self._open_tensorboard is None:
            return
        if self._tensorboard is None:
            self._tensorboard = self._open_tensorboard()
        for name, value in values.items():
            if not isinstance(value, list):
                self._tensorboard.add_scalar(name, value, step)

    def close(self) -> None:
        if not self._writing:
            return
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def _step_of(line: str) -> float:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf  # a torn last line from a killed run: dropped with the steps after the checkpoint
