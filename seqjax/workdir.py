"""An experiment's ``--workdir``: who owns it, and writing into it without leaving half-written files.

``claim`` makes a directory an experiment's own by writing ``flags.json`` (the experiment's name and
its flags) before anything else, and refuses, without writing anything, a directory that holds other
files, another experiment's run, or a run whose checkpoints were made with flags that differ from
this run's.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Collection, Mapping
from pathlib import Path

from seqjax import distributed

MARKER = "flags.json"


class WorkdirError(ValueError):
    """A --workdir that cannot be used."""


def prepare(workdir: str | os.PathLike) -> Path:
    """Creates ``workdir`` (and parents); fails with a one-line error if it is a file or unwritable."""
    path = Path(workdir)
    if path.exists() and not path.is_dir():
        raise WorkdirError(f"--workdir {path} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise WorkdirError(f"--workdir {path} is not writable")
    return path


def claim(
    workdir: str | os.PathLike,
    experiment: str,
    flags: Mapping,
    fixed: Collection[str] = (),
    defaults: Mapping | None = None,
) -> Path:
    """Makes ``workdir`` the directory of a run of ``experiment``, or checks that it already is one.

    A missing or empty directory is created and gets ``flags.json`` = ``{"experiment": experiment,
    "flags": flags}``. A directory whose ``flags.json`` names the same experiment is accepted when
    every flag in ``fixed`` (those a checkpoint there depends on) has the value it had, and its
    ``flags.json`` is then rewritten with this run's flags. Anything else raises ``WorkdirError`` with
    one line naming the directory and what was expected, before anything is written. A fixed flag that
    the record lacks (a run made before the flag existed) is taken to have had its value in ``defaults``.

    Args:
      workdir: the directory (``--workdir``).
      experiment: the experiment's name, e.g. ``"long_dependency"``.
      flags: the run's flags, JSON-serialisable.
      fixed: names in ``flags`` that must not change between runs in the same directory.
      defaults: the experiment's default flags, for records that predate a fixed flag; None: such a
        record matches no value.

    Returns:
      The directory as a ``Path``.
    """
    path = Path(workdir)
    flags = json.loads(json.dumps(dict(flags)))  # tuples become lists, as they will be when read back
    defaults = json.loads(json.dumps(dict(defaults or {})))
    if path.exists():
        if not path.is_dir():
            raise WorkdirError(f"--workdir {path} exists and is not a directory")
        entries = sorted(p.name for p in path.iterdir())
        if entries:
            _check_owner(path, entries, experiment, flags, fixed, defaults)
    return _write_marker(prepare(path), experiment, flags)


def _check_owner(
    path: Path, entries: list[str], experiment: str, flags: dict, fixed: Collection[str], defaults: dict
) -> None:
    marker = path / MARKER
    if MARKER not in entries:
        raise WorkdirError(
            f"--workdir {path} is not empty and holds no {MARKER} of a seqjax run (found {entries[0]!r}); "
            "give an empty or new directory"
        )
    try:
        recorded = json.loads(marker.read_text())
        owner, old_flags = recorded["experiment"], recorded["flags"]
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise WorkdirError(f"--workdir {path}: {marker} is not a seqjax run record ({type(e).__name__})") from e
    if owner != experiment:
        raise WorkdirError(f"--workdir {path} holds a run of {owner}, not {experiment}; give a new --workdir")
    for name in fixed:
        if name not in old_flags and name in defaults:
            old_flags[name] = defaults[name]
        if old_flags.get(name) != flags.get(name):
            raise WorkdirError(
                f"--workdir {path} holds a run made with --{name}={_spell(old_flags.get(name))}, this run has "
                f"--{name}={_spell(flags.get(name))}; rerun with the same value or give a new --workdir"
            )


def _spell(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _write_marker(path: Path, experiment: str, flags: dict) -> Path:
    write_json(path / MARKER, {"experiment": experiment, "flags": flags})
    return path


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Writes ``data`` to a temporary file beside ``path`` and renames it into place.

    In a multi-process run only the primary process writes (``seqjax.distributed``); the others return.
    """
    path = Path(path)
    if not distributed.is_primary():
        return path
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if isinstance(data, bytes) else {"encoding": "utf-8"})) as f:
            f.write(data)
        os.chmod(tmp, new_file_mode())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def new_file_mode() -> int:
    """The permissions ``open`` gives a new file: ``0o666`` less the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def append_jsonl(path: str | os.PathLike, obj) -> Path:
    """Appends ``obj`` as one JSON line to ``path`` (the primary process only, as ``write_atomic``)."""
    path = Path(path)
    if distributed.is_primary():
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(obj) + "\n")
    return path


def write_csv(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Rows of dicts as CSV, the columns in order of first appearance, written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)
    return write_atomic(path, buffer.getvalue())
