"""Runs an experiment script with one fault injected at one update: the kill -9 and full-disk tests' driver.

    python tests/faults.py KIND STEP experiments/SCRIPT.py [FLAGS...]

KIND is one of
  kill_evaluating  SIGKILL while evaluating update STEP: the evaluation was computed, its line not yet written;
  kill_saving      SIGKILL while the first checkpoint of update STEP is being written (the best state's or the
                   run's, whichever comes first): Orbax has started the write and not committed it;
  kill_logging     SIGKILL halfway through the metrics line of update STEP: a torn last line;
  full_disk        the metrics line of update STEP fails with ENOSPC, as on a full disk.
The script then runs as ``__main__``, exactly as ``python SCRIPT FLAGS`` would.
"""

import errno
import os
import runpy
import signal
import sys
from pathlib import Path

import orbax.checkpoint as ocp

from seqjax import runner
from seqjax.metric_writers import MetricWriter


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def inject(kind: str, at: int) -> None:
    if kind == "kill_evaluating":
        evaluate = runner._Run._evaluate

        def evaluating(self, state):
            if int(state.step) == at:
                self.evaluation.evaluate(state.params)
                die()
            evaluate(self, state)

        runner._Run._evaluate = evaluating
    elif kind == "kill_saving":
        save = ocp.CheckpointManager.save

        def saving(self, step, *args, **kwargs):
            saved = save(self, step, *args, **kwargs)
            if step == at:
                die()
            return saved

        ocp.CheckpointManager.save = saving
    elif kind in ("kill_logging", "full_disk"):
        write = MetricWriter.write

        def writing(self, step, metrics):
            if step == at and kind == "full_disk":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
            if step == at:
                self._file.write(f'{{"step": {step}, "loss": 0.')
                self._file.flush()
                die()
            write(self, step, metrics)

        MetricWriter.write = writing
    else:
        raise SystemExit(f"unknown fault {kind!r}")


if __name__ == "__main__":
    kind, at, script, *flags = sys.argv[1:]
    inject(kind, int(at))
    sys.argv = [script, *flags]
    sys.path.insert(0, str(Path(script).parent))
    runpy.run_path(script, run_name="__main__")
