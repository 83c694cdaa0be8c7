"""Data parallelism on a device mesh: every device holds the parameters, each reads its own rows of the batch.

    mesh  = data_mesh(n)                    a 1-D jax.sharding.Mesh, axis "data", over n devices
    state = place_state(state, mesh)        params, optimizer state, step, key: a full copy on every device;
                                            model_state (e.g. truncated BPTT's carry [b, h]): split by rows;
                                            optionally the large parameters split by rows (shard_params_over)
    batch = shard_batch(batch, mesh)        every leaf [B, ...] split in n blocks of B / n rows, block i on device i;
                                            scalars (a window index, a flag) replicated
    step  = data_parallel_step(training, mesh, state)   the same training.step, jitted with those shardings

Nothing in a model changes. The loss of a step is a mean over the global batch of ``B`` rows, so
``jit``'s partitioner computes each device's rows where they live and inserts the all-reduce that sums
their gradient contributions; the update is then applied identically on every device. A run on n
devices therefore takes the same steps as a run on one device with the same global batch, up to the
order of floating-point sums. Random numbers inside the step (dropout) are drawn for the global batch
shape from the step's key (``jax_threefry_partitionable``), so they too do not depend on n.

With several processes (``seqjax.distributed``), ``jax.devices()`` lists every process's devices and the
mesh spans them all: each process computes the same global batch (a function of the step) and hands
only its own devices' rows to them, so no input crosses hosts.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from seqjax.train import Training, TrainState

DATA = "data"  # the mesh axis the batch is split along


def data_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D mesh (axis ``"data"``) over the first ``num_devices`` devices; 0: all of them.

    With several processes the mesh must hold every device (each process feeds its own).
    """
    devices = jax.devices()
    n = num_devices or len(devices)
    if n < 1 or n > len(devices):
        raise ValueError(f"--num_devices={num_devices}: {len(devices)} {devices[0].platform} device(s) are visible")
    if jax.process_count() > 1 and n != len(devices):
        raise ValueError(
            f"--num_devices={num_devices}: a run of {jax.process_count()} processes uses all {len(devices)} devices"
        )
    return Mesh(np.asarray(devices[:n]), (DATA,))


def mesh_for(num_devices: int, batch_size: int) -> Mesh | None:
    """The data mesh of ``--num_devices`` for batches of ``batch_size`` rows, or None for one device in one
    process (the plain jit path). ``ValueError`` (one line, naming the flag) if it cannot be made."""
    mesh = data_mesh(num_devices)
    if mesh.size == 1:
        return None
    check_divisible(batch_size, mesh)
    return mesh


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def leaf_sharding(x: Any, mesh: Mesh, axis: int = 0) -> NamedSharding:
    """How a batch leaf lies on ``mesh``: split by rows along ``axis`` if it has that axis, else replicated."""
    return by_rows(mesh, axis) if np.ndim(x) > axis else replicated(mesh)


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's total, where the OS tells)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def by_rows(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Axis ``axis`` (the leading one by default) split in equal blocks over the mesh's devices, in order."""
    return NamedSharding(mesh, PartitionSpec(*([None] * axis), DATA))


def check_divisible(batch_size: int, mesh: Mesh, flag: str = "--batch_size") -> None:
    """``ValueError`` (one line naming ``flag``) unless ``batch_size`` splits evenly over the mesh."""
    if batch_size % mesh.size:
        raise ValueError(f"{flag}={batch_size} does not split over {mesh.size} devices (--num_devices): "
                         f"give a multiple of {mesh.size}")  # fmt: skip


def _place(x, sharding: NamedSharding) -> jax.Array:
    """``x`` (host or single-device) laid out as ``sharding``; each process supplies its own devices' blocks."""
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(_place(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every leaf of ``tree`` copied to every device of ``mesh``."""
    return jax.tree.map(lambda x: _place(x, replicated(mesh)), tree)


def shard_batch(batch: Any, mesh: Mesh, axis: int = 0) -> Any:
    """Every leaf ``[B, ...]`` of ``batch`` split by rows over ``mesh`` (``B`` divisible by its size), every
    scalar leaf replicated. A leaf already placed on ``mesh`` (e.g. a token array placed once for the whole
    run, by ``shard_batch`` or ``replicate``) is passed through untouched. ``axis``: the batch axis, for
    stacks of batches ``[K, B, ...]`` (leaves of lower rank are replicated)."""

    def place(x):
        shape = np.shape(x)
        if isinstance(x, jax.Array) and isinstance(x.sharding, NamedSharding) and x.sharding.mesh == mesh:
            return x
        if len(shape) > axis and shape[axis] % mesh.size:
            raise ValueError(f"a batch leaf of shape {shape} does not split by rows over {mesh.size} devices")
        return _place(x, leaf_sharding(x, mesh, axis))

    return jax.tree.map(place, batch)


def state_shardings(state: TrainState, mesh: Mesh, shard_params_over: int = 0) -> TrainState:
    """The layout of a train state: replicated, except ``model_state`` (its rows are batch rows), split by rows.

    With ``shard_params_over > 0``, every parameter with at least that many elements whose first axis splits
    evenly over the mesh (a large embedding ``[V, e]`` or softmax ``[h, V]`` typically), and its optimizer
    state, is split by rows as well: each device keeps ``1 / n`` of it, and ``jit`` gathers it where the step
    needs it whole (fully sharded data parallelism, for the big tables only).
    """
    full = replicated(mesh)

    def param_layout(x) -> NamedSharding:
        shape = np.shape(x)
        split = shard_params_over > 0 and shape and np.prod(shape) >= shard_params_over and shape[0] % mesh.size == 0
        return by_rows(mesh) if split else full

    return TrainState(
        params=jax.tree.map(param_layout, state.params),
        opt_state=jax.tree.map(param_layout, state.opt_state),  # Adam's moments follow their parameters
        step=full,
        key=full,
        model_state=jax.tree.map(lambda _: by_rows(mesh), state.model_state),
    )


def place_state(state: TrainState, mesh: Mesh, shard_params_over: int = 0) -> TrainState:
    """``state`` laid out as ``state_shardings``."""
    return jax.tree.map(_place, state, state_shardings(state, mesh, shard_params_over))


def data_parallel_step(training: Training, mesh: Mesh, state: TrainState, shard_params_over: int = 0):
    """``training.step`` jitted for ``mesh``: it reads the state as ``place_state`` and the batch as
    ``shard_batch`` laid them out (the computation follows the data), returns the state in the same
    layout (donated) and the metrics replicated."""
    layout = state_shardings(state, mesh, shard_params_over)
    return jax.jit(training.step, out_shardings=(layout, replicated(mesh)), donate_argnums=0)
