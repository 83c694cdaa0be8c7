"""kill -9 at any moment of a model-selecting experiment (halfway through a log line, while evaluating, while
writing a checkpoint) and a full disk, each followed by the same command: the straight run's evaluations (each
once), best state, test report, final parameters and metrics. Then a second writer, a read-only workdir."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import hello
import jax
import pytest
from test_sentiment import synthetic_sst

from seqjax import experiment as ex

ROOT = Path(__file__).resolve().parents[1]
FAULTS = Path(__file__).with_name("faults.py")
TIMES = ("train_s", "steps_per_s")  # measured, never reproduced: left out of every comparison


@pytest.fixture(scope="module")
def sst(tmp_path_factory):
    return synthetic_sst(tmp_path_factory.mktemp("sst") / "data", sizes=(("train", 160), ("dev", 40), ("test", 40)))


def _sentiment_flags(data: Path, workdir: Path) -> list[str]:
    """3 epochs of 10 updates, an evaluation and a checkpoint after each, metrics every 5 updates."""
    return [f"--workdir={workdir}", f"--data={data}", "--embed=8", "--hidden=8", "--min_count=1", "--batch_size=16",
            "--epochs=3", "--log_every=5", "--checkpoint_every=1000", "--learning_rate=0.01"]  # fmt: skip


def _sentiment(flags: list[str], fault: tuple[str, int] | None = None) -> subprocess.CompletedProcess:
    script = str(ROOT / "experiments" / "sentiment.py")
    command = [sys.executable, str(FAULTS), *map(str, fault), script] if fault else [sys.executable, script]
    return subprocess.run([*command, *flags], capture_output=True, text=True, timeout=300)


def _timeless(value):
    """``value`` without the measured times (any key ending in ``_s``)."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if not (k in TIMES or k.endswith("_per_s"))}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def _lines(path: Path) -> list[dict]:
    return [_timeless(json.loads(line)) for line in path.read_text().splitlines()]


def _checksums(checkpoints: Path) -> dict[str, dict]:
    """Every checkpoint's step and the CRC-32 of each of its arrays (written with it)."""
    return {step.name: json.loads((step / "checksums" / "metadata").read_text()) for step in checkpoints.iterdir()}


def _outcome(workdir: Path) -> dict:
    """What a run leaves that must not depend on whether it was interrupted."""
    return {
        "results": _timeless(json.loads((workdir / "results.json").read_text())),
        "evaluations": _lines(workdir / "eval" / "metrics.jsonl"),
        "metrics": _lines(workdir / "metrics.jsonl"),
        "best": _checksums(workdir / "best" / "checkpoints"),
        "final": _checksums(workdir / "checkpoints")[str(30)],
    }


@pytest.fixture(scope="module")
def straight(sst, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight") / "run"
    proc = _sentiment(_sentiment_flags(sst, workdir))
    assert proc.returncode == 0, proc.stderr
    return _outcome(workdir)


def test_kills_while_evaluating_and_while_writing_a_checkpoint_then_the_same_command_give_the_straight_run(
    sst, straight, tmp_path
):
    """SIGKILLed halfway through the metrics line of update 15 (a torn last line; the updates since the checkpoint
    of update 10 are lost); the same command SIGKILLed while evaluating epoch 2 (update 20), then while Orbax
    writes the checkpoint of update 30; the same command again ends as the straight run did: every evaluation
    and metrics line once, the torn one dropped, the same best state and final parameters (dropout draws from
    the step key: it is restored too)."""
    run = tmp_path / "run"
    flags = _sentiment_flags(sst, run)
    resumed_from = []
    for fault in (("kill_logging", 15), ("kill_evaluating", 20), ("kill_saving", 30)):
        killed = _sentiment(flags, fault)
        assert killed.returncode == -9, (fault, killed.stderr)
        resumed_from += [line for line in killed.stdout.splitlines() if line.startswith("resumed from")]
        if fault[0] == "kill_logging":
            assert (run / "metrics.jsonl").read_text().endswith('{"step": 15, "loss": 0.')
    assert resumed_from == [f"resumed from {run / 'checkpoints' / '10'}"] * 2  # 20's checkpoint follows its evaluation
    resumed = _sentiment(flags)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr == ""
    assert any((run / "tensorboard").iterdir()) and any((run / "eval" / "tensorboard").iterdir())
    outcome = _outcome(run)
    assert [e["step"] for e in outcome["evaluations"]] == [10, 20, 30]
    for part in ("evaluations", "results", "best", "final", "metrics"):
        assert outcome[part] == straight[part], part


def _hello(workdir: Path, python: str = sys.executable) -> str:
    flags = f"--workdir={workdir} --epochs=60 --checkpoint_every=10 --log_every=10"
    return f"{python} {ROOT / 'experiments' / 'hello.py'} {flags}"


def _can_mount() -> bool:
    probe = "mount -t tmpfs -o size=64k tmpfs /mnt"
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "sh", "-c", probe], capture_output=True
    ).returncode == 0  # fmt: skip


@pytest.mark.skipif(_can_mount(), reason="test_a_real_full_disk_then_a_read_only_one fills a real file system")
def test_a_full_disk_is_one_line_and_the_rerun_resumes_exactly(sst, straight, tmp_path):
    """ENOSPC in a metrics line, simulated where no file system can be mounted to fill."""
    flags = _sentiment_flags(sst, tmp_path / "run")
    full = _sentiment(flags, ("full_disk", 15))
    assert full.returncode == 1
    assert full.stderr == (
        f"sentiment.py: {tmp_path / 'run' / 'metrics.jsonl'}: no space left on device; free some space and rerun "
        "the same command: it resumes from the last checkpoint\n"
    )
    resumed = _sentiment(flags)
    assert resumed.returncode == 0, resumed.stderr
    assert _outcome(tmp_path / "run") == straight


@pytest.mark.skipif(not _can_mount(), reason="no user namespace to mount a small tmpfs in")
def test_a_real_full_disk_then_a_read_only_one(tmp_path):
    """hello on a 160 KiB tmpfs: one line when it fills; the same command after it grew resumes to the straight
    run's parameters; on the file system remounted read-only, one line again and nothing changes."""
    with jax.numpy_dtype_promotion("standard"):  # optax computes b ** count with an int32 count
        ex.run_command(hello.EXPERIMENT, ["hello.py", *_hello(tmp_path / "straight").split()[2:]])
    disk, report = tmp_path / "disk", tmp_path / "report"
    disk.mkdir()
    script = "; ".join([
        f"mount -t tmpfs -o size=160k tmpfs {disk}",
        f"{_hello(disk / 'run')} >/dev/null 2>{report}.full; echo $? >>{report}.full",
        f"mount -o remount,size=16m {disk}",
        f"{_hello(disk / 'run')} >/dev/null 2>{report}.resumed; echo $? >>{report}.resumed",
        f"mount -o remount,ro {disk}",
        f"{_hello(disk / 'run')} >/dev/null 2>{report}.read_only; echo $? >>{report}.read_only",
        f"cp -r {disk / 'run'} {tmp_path / 'resumed'}",
    ])  # fmt: skip
    subprocess.run(["unshare", "-rm", "sh", "-c", script], check=True, timeout=300)
    full, status = Path(f"{report}.full").read_text().splitlines()
    assert status == "1" and full.startswith("hello.py: ") and "no space left on device; free some space" in full
    assert Path(f"{report}.resumed").read_text().splitlines() == ["0"]
    read_only = Path(f"{report}.read_only").read_text().splitlines()
    assert read_only == [f"hello.py: --workdir {disk / 'run'} is not writable", "1"]
    for name in ("metrics.jsonl",):
        assert _lines(tmp_path / "resumed" / name) == _lines(tmp_path / "straight" / name)
    assert _checksums(tmp_path / "resumed" / "checkpoints") == _checksums(tmp_path / "straight" / "checkpoints")
