"""Writing into an experiment's ``--workdir`` without ever leaving a half-written file behind."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path


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


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Writes ``data`` to a temporary file beside ``path`` and renames it into place."""
    path = Path(path)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Rows of dicts as CSV, the columns in order of first appearance, written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)
    return write_atomic(path, buffer.getvalue())
