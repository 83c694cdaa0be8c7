"""The flags of a multi-process run, shared by the training scripts (importing this module defines them).

    python experiments/X.py --coordinator_address=host0:8476 --num_processes=4 --process_id=$I ...
    srun python experiments/X.py --distributed ...        # SLURM, Cloud TPU VMs: JAX reads the cluster

``start`` (first thing in a script's ``main``) joins the run, silences the progress output of every
process but the first, and checks ``--num_devices`` against the devices the run has.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from seqjax import distributed

COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address", "", "Multi-process run: host:port of process 0 (with --num_processes, --process_id)."
)
NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Multi-process run: how many processes.", lower_bound=0)
PROCESS_ID = flags.DEFINE_integer("process_id", -1, "Multi-process run: this process's index, 0-based.")
DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join the multi-process run the cluster's environment describes (SLURM, Cloud TPU VM)."
)


def start(num_devices: int, batch_size: int, batch_flag: str = "--batch_size") -> None:
    """Joins the multi-process run the flags (or ``launch/local.py``'s environment) describe, if any; then
    ``app.UsageError`` (one line) unless ``--num_devices`` devices exist and ``batch_size`` splits over them.

    Call it before anything touches JAX's devices: ``jax.distributed.initialize`` must come first.
    """
    from seqjax import parallel  # after the flags are parsed; parallel's checks start JAX's backends

    try:
        joined = distributed.initialize(
            COORDINATOR_ADDRESS.value, NUM_PROCESSES.value, PROCESS_ID.value, auto=DISTRIBUTED.value
        )
        if joined and not distributed.is_primary():
            sys.stdout = open(os.devnull, "w")  # one progress log, process 0's; errors still reach stderr
        parallel.mesh_for(num_devices, batch_size)
    except ValueError as e:
        raise app.UsageError(str(e).replace("--batch_size", batch_flag)) from e
