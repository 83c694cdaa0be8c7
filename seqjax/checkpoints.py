"""Checkpoints of a ``TrainState`` with Orbax's ``CheckpointManager``: every N steps, keep K, resume.

PRNG keys are stored as their raw ``key_data`` and re-wrapped on restore, so a restored state is
bit-for-bit the saved one.

Every checkpoint holds, beside the state, the CRC-32 of each of its arrays (the ``checksums`` item, written
in the same atomic commit). A restore recomputes them: a checkpoint that cannot be read (a truncated file,
an empty step folder, a torn ``_METADATA``) or whose arrays fail their checksum (a flipped bit) is moved to
``<workdir>/damaged_checkpoints/<step>``, reported in one line, and the next newest is tried. A state whose
parameters are not all finite is never saved.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from seqjax import distributed
from seqjax.train import TrainState

STATE_ITEM = "default"  # the state's item: the name Orbax gave it when a checkpoint held nothing else
CHECKSUMS_ITEM = "checksums"
DAMAGED_DIR = "damaged_checkpoints"
TMP_SUFFIX = ".orbax-checkpoint-tmp"


class CheckpointMismatch(ValueError):
    """A checkpoint that does not fit the run that tries to restore it."""


class DamagedCheckpoint(ValueError):
    """A checkpoint that cannot be read, or whose arrays fail the checksums written with them."""


class NonFiniteState(ValueError):
    """A state with NaN or inf parameters, which is never saved."""


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written (a full disk, a read-only file system); the ones before it stand."""


_OS_REASONS = ("No space left on device", "Read-only file system", "Permission denied", "Disk quota exceeded")


def _write_failure(where: Path, error: Exception) -> CheckpointWriteError:
    """One line for a failed save: the operating system's reason when Orbax's message carries one."""
    text = str(error)
    reason = next((r for r in _OS_REASONS if r in text), None) or getattr(error, "strerror", None) or (
        _first_line(error))  # fmt: skip
    return CheckpointWriteError(f"cannot write checkpoint {where}: {reason[0].lower() + reason[1:]}")


@contextlib.contextmanager
def _quiet_failures() -> Iterator[None]:
    """Orbax logs every failure of its reader and writer threads as tracebacks, TensorStore's callbacks print to
    file descriptor 2, and the coroutines a failure leaves behind complain when collected; a failed save or
    restore is reported by one exception instead. Output of a block that succeeds still reaches stderr."""
    loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
    levels = [logger.level for logger in loggers]
    hook = sys.unraisablehook
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    sys.unraisablehook = lambda unraisable: None
    sys.stderr.flush()
    saved = os.dup(2)
    failed = False
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            gc.collect()  # the failure's orphaned coroutines, while nobody listens
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sys.unraisablehook = hook
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)
            if not failed:
                captured.seek(0)
                os.write(2, captured.read())


def _to_storable(state: TrainState) -> dict:
    storable = {
        "params": state.params,
        "opt_state": state.opt_state,
        "step": state.step,
        "key": jax.random.key_data(state.key),
    }
    if state.model_state is not None:
        storable["model_state"] = state.model_state
    return storable


def _key_name(entry) -> str:
    for attribute in ("key", "name", "idx"):  # DictKey / FlattenedIndexKey, GetAttrKey, SequenceKey
        if hasattr(entry, attribute):
            return str(getattr(entry, attribute))
    return str(entry)


def _paths(tree) -> list[tuple[str, object]]:
    """``[("opt_state/1/0/count", leaf), ...]``: paths spelled the same for NamedTuples and the dicts Orbax stores
    them as, so a checkpoint's metadata and a live state compare directly."""
    return [
        ("/".join(_key_name(entry) for entry in path), leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


def _shape_table(tree) -> dict[str, tuple]:
    return {path: (tuple(leaf.shape), str(leaf.dtype)) for path, leaf in _paths(tree)}


def _crc32(array: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def _on_host(tree) -> dict[str, np.ndarray | None]:
    """``{path: the leaf as a NumPy array}``; None for an array this process does not hold whole (a parameter
    split over the processes of a multi-process run)."""
    return {
        path: np.asarray(leaf) if getattr(leaf, "is_fully_addressable", True) else None for path, leaf in _paths(tree)
    }


def checksums(host: dict[str, np.ndarray | None]) -> dict[str, int | None]:
    """``{path: CRC-32 of the array's bytes}`` of ``_on_host``'s arrays (None stays None)."""
    return {path: None if array is None else _crc32(array) for path, array in host.items()}


def _remove_unfinished(directory: Path) -> None:
    """Deletes the folders of checkpoints whose write never finished (a kill during a save): Orbax writes a step
    into ``<step>.orbax-checkpoint-tmp*`` and renames it once complete. The primary process only, before anyone
    saves."""
    if distributed.is_primary() and directory.is_dir():
        for unfinished in directory.glob(f"*{TMP_SUFFIX}*"):
            shutil.rmtree(unfinished, ignore_errors=True)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def restore(workdir: str | os.PathLike, template: TrainState, fallback: bool = True) -> TrainState:
    """The latest checkpoint under ``<workdir>/checkpoints`` in ``template``'s structure.

    ``FileNotFoundError`` if there is none, ``CheckpointMismatch`` if it is another model's. A damaged latest
    checkpoint is set aside and the one before it restored (``Checkpointer.restore_latest``), or with
    ``fallback=False`` raises ``DamagedCheckpoint``: where the newest state is the one that must be read (the
    best state of a run, whose score was recorded).
    """
    checkpointer = Checkpointer(workdir, every=1)
    try:
        if fallback:
            state = checkpointer.restore_latest(template)
        else:
            step = checkpointer.check(template)
            state = None if step is None else checkpointer.restore_step(step, template)
    finally:
        checkpointer.close()
    if state is None:
        raise FileNotFoundError(f"{checkpointer.directory}: no checkpoint")
    return state


def check_finite(host: dict[str, np.ndarray | None], what: str = "the parameters") -> None:
    """``NonFiniteState`` (one line naming the first such leaf) unless every floating ``params/`` array of
    ``_on_host``'s is finite."""
    for path, array in host.items():
        if not path.startswith("params/") or array is None or not np.issubdtype(array.dtype, np.inexact):
            continue
        if not np.isfinite(array).all():
            raise NonFiniteState(f"{what} hold NaN or inf ({path}): not saved")


class Checkpointer:
    """Saves and restores ``TrainState`` under ``<workdir>/checkpoints``.

    Args:
      workdir: the run's directory.
      every: save when ``step % every == 0`` (and always on ``save(..., force=True)``).
      keep: how many of the latest checkpoints to keep.
      report: ``report(line)`` for each damaged checkpoint set aside by ``restore_latest``; default: to stderr.
    """

    def __init__(self, workdir: str | os.PathLike, every: int, keep: int = 3,
                 report: Callable[[str], None] | None = None):  # fmt: skip
        if every < 1 or keep < 1:
            raise ValueError(f"checkpoint every and keep must be >= 1, got every={every}, keep={keep}")
        self.directory = Path(workdir).absolute() / "checkpoints"
        self.every = every
        self.report = report or (lambda line: print(line, file=sys.stderr, flush=True))
        self.set_aside: list[int] = []
        _remove_unfinished(self.directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        handlers = {STATE_ITEM: ocp.StandardCheckpointHandler(), CHECKSUMS_ITEM: ocp.JsonCheckpointHandler()}
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def drop_after(self, step: int) -> None:
        """Deletes the checkpoints of steps after ``step``: states of a run's future that a resume redoes."""
        for later in [s for s in self._manager.all_steps() if s > step]:
            self._manager.delete(later)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, state: TrainState, force: bool = False) -> bool:
        """Saves ``state`` if its step is due (or ``force``) and not saved already; returns whether it did.

        ``NonFiniteState`` if its parameters hold NaN or inf: such a state is never saved. ``CheckpointWriteError``
        (one line) if it cannot be written; the half-written folder is removed by the next ``Checkpointer``.
        """
        step = int(state.step)
        if step in self._manager.all_steps() or not (force or step % self.every == 0):
            return False
        storable = _to_storable(state)
        host = _on_host(storable)  # one copy to the host, for both checks
        check_finite(host, f"the parameters of step {step}")
        args = ocp.args.Composite(
            **{STATE_ITEM: ocp.args.StandardSave(storable), CHECKSUMS_ITEM: ocp.args.JsonSave(checksums(host))}
        )
        with _quiet_failures():
            try:
                self._manager.save(step, args=args, force=True)
                self._manager.wait_until_finished()
            except Exception as e:  # Orbax raises what TensorStore and its threads raised
                # A save that fails in this thread can leave Orbax's commit threads running, and they log their own
                # failure as tracebacks: let them end while stderr is still quiet.
                with contextlib.suppress(Exception):
                    self._manager.wait_until_finished()
                raise _write_failure(self.directory / str(step), e) from e
        return True

    def check(self, template: TrainState) -> int | None:
        """The latest readable checkpoint's step (None if there is none), after checking that it fits ``template``.

        Raises ``CheckpointMismatch`` (one line, naming the directory) if the checkpoint's arrays have other
        shapes or dtypes than ``template``'s: a checkpoint of a different model. Reads only metadata; a step
        whose metadata cannot be read is passed over (``restore_latest`` sets it aside). Writes nothing.
        """
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                stored = self._stored_shapes(step)
            except DamagedCheckpoint:
                continue
            self._check_fits(step, stored, template)
            return step
        return None

    def restore_latest(self, template: TrainState) -> TrainState | None:
        """The newest checkpoint that reads back whole, restored into ``template``'s structure; None if there is none.

        Each newer one that cannot be read or fails its checksums is moved to ``<workdir>/damaged_checkpoints/``
        and reported in one line. Raises ``CheckpointMismatch`` (``check``) for a checkpoint of a different model.
        """
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                self._check_fits(step, self._stored_shapes(step), template)
                return self.restore_step(step, template)
            except DamagedCheckpoint as e:
                self._set_aside(step, str(e))
        return None

    def restore_step(self, step: int, template: TrainState) -> TrainState:
        """Checkpoint ``step`` restored into ``template``'s structure and checked against its checksums;
        ``DamagedCheckpoint`` (one line) if it cannot be read or fails them."""
        where = self.directory / str(step)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_storable(template))
        items = {STATE_ITEM: ocp.args.StandardRestore(abstract)}
        has_checksums = (where / CHECKSUMS_ITEM).is_dir()  # checkpoints written before checksums have none
        if has_checksums:
            items[CHECKSUMS_ITEM] = ocp.args.JsonRestore()
        try:
            with _quiet_failures():
                restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # Orbax and TensorStore raise many kinds for a damaged file
            raise DamagedCheckpoint(f"checkpoint {where} cannot be read: {_first_line(e)}") from e
        # Orbax hands back arrays committed to a device, and jit compiles anew for committed arguments where
        # a fresh run's were uncommitted: rebuilding them uncommitted keeps a resume on the cached compilation.
        host = jax.tree.map(np.asarray, restored[STATE_ITEM])
        if has_checksums:
            expected = restored[CHECKSUMS_ITEM]
            for path, crc in checksums(_on_host(host)).items():
                if expected.get(path) is not None and crc != expected[path]:
                    raise DamagedCheckpoint(f"checkpoint {where} fails its checksum ({path} was changed on disk)")
        state = jax.tree.map(jnp.asarray, host)
        key = jax.random.wrap_key_data(state["key"], impl=jax.random.key_impl(template.key))
        return TrainState(state["params"], state["opt_state"], state["step"], key, state.get("model_state"))

    def _stored_shapes(self, step: int) -> dict[str, tuple]:
        try:
            with _quiet_failures():
                metadata = self._manager.item_metadata(step)
            metadata = metadata[STATE_ITEM] if metadata is not None else None
        except Exception as e:  # a torn or missing _METADATA, an empty step folder
            raise DamagedCheckpoint(f"checkpoint {self.directory / str(step)} cannot be read: {_first_line(e)}") from e
        if metadata is None:
            raise DamagedCheckpoint(f"checkpoint {self.directory / str(step)} cannot be read: it holds no state")
        return _shape_table(metadata)

    def _check_fits(self, step: int, stored: dict[str, tuple], template: TrainState) -> None:
        wanted = _shape_table(_to_storable(template))
        if stored != wanted:
            path = next(p for p in sorted(set(stored) | set(wanted)) if stored.get(p) != wanted.get(p))
            raise CheckpointMismatch(
                f"checkpoint {self.directory / str(step)} does not fit this run: {path} is "
                f"{stored.get(path, 'absent')} there and {wanted.get(path, 'absent')} here "
                "(use another --workdir for a different model)"
            )

    def _set_aside(self, step: int, reason: str) -> None:
        """Moves damaged checkpoint ``step`` out of the manager's sight, to ``<workdir>/damaged_checkpoints/``."""
        aside = self.directory.parent / DAMAGED_DIR / str(step)
        if distributed.is_primary():
            if aside.exists():
                shutil.rmtree(aside)
            aside.parent.mkdir(exist_ok=True)
            shutil.move(self.directory / str(step), aside)
        distributed.sync(f"set aside {self.directory / str(step)}")
        self._manager.reload()
        self.set_aside.append(step)
        self.report(f"{reason}; moved to {aside}")

    def close(self) -> None:
        self._manager.close()
