r"""Runs one command as N processes of one multi-process JAX run on this machine (the multi-host path, locally).

    python launch/local.py --num_processes=2 --devices_per_process=2 -- \
        python experiments/language_model.py --corpus=chars --data=../shared/data/tinyshakespeare \
        --workdir=runs/shakespeare_2x2 --preset=char_rnn --epochs=1

Every process gets ``SEQJAX_COORDINATOR=localhost:<port>``, ``SEQJAX_NUM_PROCESSES=N`` and
``SEQJAX_PROCESS_ID=i`` (``seqjax.distributed.initialize`` reads them) and, with
``--devices_per_process``, that many forced CPU devices (``XLA_FLAGS``). Their output is interleaved
line by line, each line prefixed with ``[i]``. When one process fails the others are stopped, and this
launcher exits with the first failure's status.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

from absl import app, flags

NUM_PROCESSES = flags.DEFINE_integer("num_processes", 2, "Processes to start.", lower_bound=1)
DEVICES_PER_PROCESS = flags.DEFINE_integer(
    "devices_per_process", 0, "Force this many CPU devices in each process (0: the platform's own).", lower_bound=0
)
PORT = flags.DEFINE_integer("port", 0, "The coordinator's port on localhost (0: a free one).", lower_bound=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def environment(process_id: int, num_processes: int, port: int, devices_per_process: int) -> dict[str, str]:
    """The environment of process ``process_id``: this one's, plus the run's description."""
    env = dict(os.environ)
    env.update(
        SEQJAX_COORDINATOR=f"localhost:{port}",
        SEQJAX_NUM_PROCESSES=str(num_processes),
        SEQJAX_PROCESS_ID=str(process_id),
        PYTHONUNBUFFERED="1",
    )
    if devices_per_process:
        forced = f"--xla_force_host_platform_device_count={devices_per_process}"
        env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS", ""), forced]))
        env["JAX_PLATFORMS"] = "cpu"
    return env


def _relay(process_id: int, stream) -> None:
    for line in stream:
        sys.stdout.write(f"[{process_id}] {line}")
        sys.stdout.flush()


def launch(command: list[str], num_processes: int, devices_per_process: int = 0, port: int = 0) -> int:
    """Runs ``command`` as ``num_processes`` processes; returns 0, or the first failed process's status."""
    port = port or free_port()
    processes = [
        subprocess.Popen(
            command,
            env=environment(i, num_processes, port, devices_per_process),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(num_processes)
    ]
    relays = [threading.Thread(target=_relay, args=(i, p.stdout), daemon=True) for i, p in enumerate(processes)]
    for relay in relays:
        relay.start()
    status = 0
    remaining = set(range(num_processes))
    while remaining:
        for i in sorted(remaining):
            code = processes[i].poll()
            if code is None:
                continue
            remaining.discard(i)
            if code != 0 and status == 0:
                status = code
                print(f"[launch] process {i} exited with status {code}; stopping the others", flush=True)
                for j in remaining:
                    processes[j].terminate()
        if remaining:
            try:
                processes[min(remaining)].wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
    for relay in relays:
        relay.join(timeout=5)
    return status


def main(argv):
    command = argv[1:]
    if not command:
        raise app.UsageError("give the command to run after --, e.g. -- python experiments/language_model.py ...")
    sys.exit(launch(command, NUM_PROCESSES.value, DEVICES_PER_PROCESS.value, PORT.value))


if __name__ == "__main__":
    app.run(main)
