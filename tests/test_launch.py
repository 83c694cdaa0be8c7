"""launch/: the local multi-process launcher's environment, output and failure handling; the SLURM and TPU VM
scripts' commands (run with a stand-in srun, and dry)."""

import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL = [sys.executable, str(ROOT / "launch" / "local.py")]


def test_local_launcher_describes_the_run_to_every_process():
    show = "import os; print(*(os.environ[k] for k in ('SEQJAX_PROCESS_ID', 'SEQJAX_NUM_PROCESSES', 'XLA_FLAGS')))"
    env = dict(os.environ, XLA_FLAGS="--xla_backend_optimization_level=0")  # the launcher adds to the caller's flags
    done = subprocess.run([*LOCAL, "--num_processes=3", "--devices_per_process=2", "--", sys.executable, "-c", show],
                          capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    flags = "--xla_backend_optimization_level=0 --xla_force_host_platform_device_count=2"
    assert sorted(done.stdout.splitlines()) == [f"[{i}] {i} 3 {flags}" for i in range(3)]


def test_local_launcher_stops_the_others_and_reports_the_first_failure():
    fail = "import os, sys, time; i = os.environ['SEQJAX_PROCESS_ID']; sys.exit(3) if i == '1' else time.sleep(60)"
    done = subprocess.run([*LOCAL, "--num_processes=2", "--", sys.executable, "-c", fail],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 3 and "process 1 exited with status 3; stopping the others" in done.stdout


def test_slurm_script_runs_the_experiment_on_every_node_with_distributed(tmp_path):
    srun = tmp_path / "srun"
    srun.write_text('#!/bin/bash\necho "srun $*"\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    done = subprocess.run(["bash", str(ROOT / "launch" / "slurm.sbatch"), "experiments/language_model.py",
                           "--workdir=/shared/run"], capture_output=True, text=True, env=env, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout
        == "srun --kill-on-bad-exit=1 python experiments/language_model.py --distributed --workdir=/shared/run\n"
    )
    assert subprocess.run(["bash", str(ROOT / "launch" / "slurm.sbatch")], capture_output=True, env=env).returncode == 2


def test_tpu_vm_script_runs_the_same_command_on_all_workers():
    env = dict(os.environ, DRY_RUN="1")
    done = subprocess.run(["bash", str(ROOT / "launch" / "tpu_vm.sh"), "tpu1", "zone1", "experiments/sentiment.py",
                           "--epochs=1"], capture_output=True, text=True, env=env, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    archive, scp, ssh = (
        done.stdout.splitlines()[0],
        done.stdout.splitlines()[1],
        "\n".join(done.stdout.splitlines()[2:]),
    )
    assert archive.startswith("git archive") and "--worker=all" in scp and "--worker=all" in ssh
    assert "python experiments/sentiment.py --epochs=1 --distributed" in ssh
