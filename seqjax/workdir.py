"""An experiment's ``--workdir``: who owns it, who writes it, and writing into it without half-written files.

``check_claim`` refuses, without writing anything, a directory that holds other files, another
experiment's run, or a run whose checkpoints were made with flags that differ from this run's; ``claim``
then makes the directory the experiment's own by writing ``flags.json`` (the experiment's name and its
flags) before anything else. ``lock`` keeps a second process out of a directory while a run writes it.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import tempfile
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

from seqjax import distributed

MARKER = "flags.json"
LOCK = ".lock"


class WorkdirError(ValueError):
    """A --workdir that cannot be used."""


def prepare(workdir: str | os.PathLike) -> Path:
    """Creates ``workdir`` (and parents); fails with a one-line error if it is a file or unwritable."""
    path = Path(workdir)
    if path.exists() and not path.is_dir():
        raise WorkdirError(f"--workdir {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"--workdir {path} cannot be created: {e.strerror or e}") from None
    if not os.access(path, os.W_OK):
        raise WorkdirError(f"--workdir {path} is not writable")
    return path


@contextlib.contextmanager
def lock(workdir: str | os.PathLike) -> Iterator[Path]:
    """Holds ``<workdir>/.lock`` (creating the directory) while the block runs: one writer per workdir.

    A second process is refused with ``WorkdirError`` while the first is alive; the operating system
    releases the lock when its holder dies, so a killed run never blocks the rerun. In a multi-process run
    only the primary process, the one that writes, takes it.
    """
    path = prepare(workdir)
    if not distributed.is_primary():
        yield path
        return
    with open(path / LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise WorkdirError(
                f"--workdir {path} is in use by another run (process {holder}); wait for it to end"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield path
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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
    check_claim(workdir, experiment, flags, fixed, defaults)
    return _write_marker(prepare(workdir), experiment, json.loads(json.dumps(dict(flags))))


def check_claim(
    workdir: str | os.PathLike,
    experiment: str,
    flags: Mapping,
    fixed: Collection[str] = (),
    defaults: Mapping | None = None,
) -> None:
    """``claim``'s checks alone: ``WorkdirError`` (one line) for a directory ``claim`` would refuse; writes nothing."""
    path = Path(workdir)
    flags = json.loads(json.dumps(dict(flags)))  # tuples become lists, as they will be when read back
    defaults = json.loads(json.dumps(dict(defaults or {})))
    if path.exists():
        if not path.is_dir():
            raise WorkdirError(f"--workdir {path} exists and is not a directory")
        entries = sorted(p.name for p in path.iterdir() if p.name != LOCK)
        if entries:
            _check_owner(path, entries, experiment, flags, fixed, defaults)
    else:
        parent = next((p for p in path.absolute().parents if p.exists()), None)
        if parent is not None and (not parent.is_dir() or not os.access(parent, os.W_OK)):
            raise WorkdirError(f"--workdir {path} cannot be created: {parent} is not a writable directory")


def read_record(workdir: str | os.PathLike, experiment: str) -> dict:
    """The flags ``flags.json`` records for a run of ``experiment`` in ``workdir``; ``FileNotFoundError`` or
    ``ValueError`` (one line) for a directory that holds no such run."""
    marker = Path(workdir) / MARKER
    if not marker.is_file():
        raise FileNotFoundError(f"{workdir}: no {MARKER} (expected a workdir of experiments/{experiment}.py)")
    record = json.loads(marker.read_text())
    if record.get("experiment") != experiment:
        raise ValueError(f"{workdir} holds a {record.get('experiment')!r} run, not a {experiment} run")
    return record["flags"]


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
