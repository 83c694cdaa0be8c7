"""Several processes, one run: JAX's own distributed runtime (``jax.distributed``), and who writes what.

A multi-process run is the same program started once per process (one per host, or several on one
machine to test the path on CPU). ``initialize`` joins them: afterwards ``jax.devices()`` lists every
process's devices, ``seqjax.parallel.data_mesh()`` spans them all, and each training step is one SPMD
program over the whole mesh. Every process computes the same global batch from the step number and
feeds only its own devices' rows (``parallel.shard_batch``).

Only the primary process (index 0) writes the workdir's files (``flags.json``, metrics, results,
figures) and prints progress; the others compute alongside it. Checkpoints are written by Orbax, to
which every process contributes (its call is collective), into the one workdir: on several hosts it
must be on a file system they all see.
"""

from __future__ import annotations

import os

import jax

COORDINATOR_ENV = "SEQJAX_COORDINATOR"  # host:port of process 0's coordination service
NUM_PROCESSES_ENV = "SEQJAX_NUM_PROCESSES"
PROCESS_ID_ENV = "SEQJAX_PROCESS_ID"


def initialize(coordinator_address: str = "", num_processes: int = 0, process_id: int = -1, auto: bool = False) -> bool:
    """Joins a multi-process run if one is described; returns whether this process is part of one.

    In order of precedence:

    - ``coordinator_address``, ``num_processes`` and ``process_id`` (flags), all three;
    - the ``SEQJAX_COORDINATOR``, ``SEQJAX_NUM_PROCESSES`` and ``SEQJAX_PROCESS_ID`` environment variables
      (set by ``launch/local.py``);
    - ``auto``: ``jax.distributed.initialize()`` with no arguments, which reads the cluster's own
      environment (SLURM, Open MPI, Cloud TPU VMs, Kubernetes JobSets).

    With none of these the run is a single process and nothing is done. On CPU, the processes' collectives
    go through gloo.
    """
    given = (bool(coordinator_address), num_processes > 0, process_id >= 0)
    if any(given) and not all(given):
        raise ValueError("--coordinator_address, --num_processes and --process_id go together: give all three or none")
    if not any(given) and COORDINATOR_ENV in os.environ:
        try:
            coordinator_address = os.environ[COORDINATOR_ENV]
            num_processes = int(os.environ[NUM_PROCESSES_ENV])
            process_id = int(os.environ[PROCESS_ID_ENV])
        except (KeyError, ValueError) as e:
            raise ValueError(
                f"{COORDINATOR_ENV} is set: {NUM_PROCESSES_ENV} and {PROCESS_ID_ENV} must be integers too ({e})"
            ) from e
    if not (coordinator_address or auto):
        return False
    if not 0 <= process_id < num_processes and not auto:
        raise ValueError(f"--process_id={process_id} must be in [0, --num_processes={num_processes})")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU only; accelerators use their own
    if coordinator_address:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    else:
        jax.distributed.initialize()
    return True


def sync(name: str) -> None:
    """Waits until every process of a multi-process run reaches ``sync(name)``; nothing in a single process.

    Every check before the first write is made by every process on the same files: the barrier keeps the
    primary from writing before the others have checked (they would see another directory, and a process that
    alone opens a checkpoint would wait for the others forever).
    """
    if jax.distributed.is_initialized() and jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def is_primary() -> bool:
    """Whether this process writes the run's files and prints its progress: process 0, or the only one.

    Outside a multi-process run this does not touch JAX's backends (so ``initialize`` can still follow).
    """
    return not jax.distributed.is_initialized() or jax.process_index() == 0
