"""Every script's command line: absl flags, and each refusal one line on stderr with exit status 1.

``run(main)`` is ``absl.app.run(main)`` for a script whose user may give bad input: a flag absl cannot parse,
an ``app.UsageError`` or a ``BAD_INPUT`` error raised by ``main`` is printed as one line naming the script
(absl's usage text only with ``--help``); an ``OSError`` (a full disk, a read-only file system) is one line
naming the file and the reason, after which the process ends at once, before writer threads print tracebacks
of the same failure. What was written before the failure stands: a rerun resumes from the last checkpoint.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from absl import app, flags, logging

from seqjax import checkpoints, config, runner, workdir
from seqjax.data.text import DataError

BAD_INPUT = (
    config.ConfigError,
    DataError,
    workdir.WorkdirError,
    checkpoints.CheckpointMismatch,
    checkpoints.DamagedCheckpoint,
    checkpoints.NonFiniteState,
    runner.NonFiniteError,
    app.UsageError,
)


def run(main: Callable[[list[str]], int | None]) -> None:
    """``app.run(main)`` with one-line refusals (see the module docstring); ``quiet_logs`` before ``main``. As with
    ``app.run``, what ``main`` returns is the exit status."""

    def parse(argv: list[str]) -> list[str]:
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            refuse(str(e))

    def checked(argv: list[str]) -> Any:
        quiet_logs()
        try:
            return main(argv)
        except BAD_INPUT as e:
            refuse(str(e))
        except OSError as e:
            refuse(os_error_line(e), hard=True)

    app.run(checked, flags_parser=parse)


def refuse(message: str, hard: bool = False) -> None:
    """Ends the process with ``message`` as one line on stderr and exit status 1.

    ``hard``: without the interpreter's shutdown, whose unfinished writer threads (Orbax's, TensorBoard's) would
    print tracebacks of the same failure after the line.
    """
    print(f"{Path(sys.argv[0]).name}: {message.strip().splitlines()[0]}", file=sys.stderr, flush=True)
    if hard:
        sys.stdout.flush()
        os._exit(1)
    sys.exit(1)


def os_error_line(error: OSError) -> str:
    """One line for a failed read or write: the file, the reason, and for a full disk what to do."""
    if error.filename and not isinstance(error, checkpoints.CheckpointWriteError):
        text = f"{error.filename}: {(error.strerror or str(error)).lower()}"
    else:
        text = str(error)
    if error.errno == errno.ENOSPC or "no space left" in text.lower():
        text += "; free some space and rerun the same command: it resumes from the last checkpoint"
    return text


def quiet_logs() -> None:
    """Warnings only, unless ``--verbosity`` was given: Orbax logs every checkpoint operation at INFO and JAX
    names every backend it did not find."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
