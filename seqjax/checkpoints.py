"""Checkpoints of a ``TrainState`` with Orbax's ``CheckpointManager``: every N steps, keep K, resume.

PRNG keys are stored as their raw ``key_data`` and re-wrapped on restore, so a restored state is
bit-for-bit the saved one.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from seqjax.train import TrainState


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


def _shape_table(tree) -> dict[str, tuple]:
    """``{"opt_state/1/0/count": (shape, dtype), ...}``: paths spelled the same for NamedTuples and the
    dicts Orbax stores them as, so a checkpoint's metadata and a live state compare directly."""
    return {
        "/".join(_key_name(entry) for entry in path): (tuple(leaf.shape), str(leaf.dtype))
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


class CheckpointMismatch(ValueError):
    """A checkpoint that does not fit the run that tries to restore it."""


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def restore(workdir: str | os.PathLike, template: TrainState) -> TrainState:
    """The latest checkpoint under ``<workdir>/checkpoints`` in ``template``'s structure; ``FileNotFoundError`` if
    there is none, ``CheckpointMismatch`` if it is another model's."""
    checkpointer = Checkpointer(workdir, every=1)
    try:
        state = checkpointer.restore_latest(template)
    finally:
        checkpointer.close()
    if state is None:
        raise FileNotFoundError(f"{checkpointer.directory}: no checkpoint")
    return state


class Checkpointer:
    """Saves and restores ``TrainState`` under ``<workdir>/checkpoints``.

    Args:
      workdir: the run's directory.
      every: save when ``step % every == 0`` (and always on ``save(..., force=True)``).
      keep: how many of the latest checkpoints to keep.
    """

    def __init__(self, workdir: str | os.PathLike, every: int, keep: int = 3):
        if every < 1 or keep < 1:
            raise ValueError(f"checkpoint every and keep must be >= 1, got every={every}, keep={keep}")
        self.directory = Path(workdir).absolute() / "checkpoints"
        self.every = every
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
        )

    def drop_after(self, step: int) -> None:
        """Deletes the checkpoints of steps after ``step``: states of a run's future that a resume redoes."""
        for later in [s for s in self._manager.all_steps() if s > step]:
            self._manager.delete(later)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, state: TrainState, force: bool = False) -> bool:
        """Saves ``state`` if its step is due (or ``force``) and not saved already; returns whether it did."""
        step = int(state.step)
        if step in self._manager.all_steps() or not (force or step % self.every == 0):
            return False
        self._manager.save(step, args=ocp.args.StandardSave(_to_storable(state)), force=True)
        self._manager.wait_until_finished()
        return True

    def check(self, template: TrainState) -> int | None:
        """The latest checkpoint's step (None if there is none), after checking that it fits ``template``.

        Raises ``CheckpointMismatch`` (one line, naming the directory) if the checkpoint's arrays have other
        shapes or dtypes than ``template``'s: a checkpoint of a different model. Reads only metadata.
        """
        step = self._manager.latest_step()
        if step is None:
            return None
        metadata = self._manager.item_metadata(step)
        stored = _shape_table(metadata) if metadata is not None else None
        wanted = _shape_table(_to_storable(template))
        if stored is not None and stored != wanted:
            path = next(p for p in sorted(set(stored) | set(wanted)) if stored.get(p) != wanted.get(p))
            raise CheckpointMismatch(
                f"checkpoint {self.directory / str(step)} does not fit this run: {path} is "
                f"{stored.get(path, 'absent')} there and {wanted.get(path, 'absent')} here "
                "(use another --workdir for a different model)"
            )
        return step

    def restore_latest(self, template: TrainState) -> TrainState | None:
        """The latest checkpoint, restored into ``template``'s structure, or None if there is none.

        Raises ``CheckpointMismatch`` (``check``) for a checkpoint of a different model.
        """
        step = self.check(template)
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_storable(template))
        try:
            restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointMismatch(
                f"checkpoint {self.directory / str(step)} cannot be restored: {_first_line(e)}"
            ) from e
        # Orbax hands back arrays committed to a device, and jit compiles anew for committed arguments where
        # a fresh run's were uncommitted: rebuilding them uncommitted keeps a resume on the cached compilation.
        restored = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), restored)
        key = jax.random.wrap_key_data(restored["key"], impl=jax.random.key_impl(template.key))
        return TrainState(restored["params"], restored["opt_state"], restored["step"], key, restored.get("model_state"))

    def close(self) -> None:
        self._manager.close()
