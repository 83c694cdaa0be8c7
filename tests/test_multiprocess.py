"""A multi-process run on localhost (launch/local.py: 2 processes x 2 CPU devices, gloo collectives): the
language-model experiment completes, writes each file once, and validates as the same run in one process."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import language_model
import pytest

from seqjax import distributed
from seqjax import experiment as ex

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(corpus="chars", cell="gru", num_layers=1, hidden=16, bptt=8, batch_size=4, max_steps=4, eval_bptt=16)


def flags(config: dict) -> list[str]:
    return [f"--{name}={value}" for name, value in config.items()]


def test_two_processes_train_as_one(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog; " * 40)
    command = [sys.executable, str(ROOT / "launch" / "local.py"), "--num_processes=2", "--devices_per_process=2", "--",
               sys.executable, str(ROOT / "experiments" / "language_model.py"), f"--data={text}",
               f"--workdir={tmp_path / 'two'}", *flags(TINY)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "[0] step 4/4" in done.stdout and "[1] step" not in done.stdout  # process 0's progress only
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    evaluations = (tmp_path / "two" / "eval" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in evaluations] == [4]
    assert (tmp_path / "two" / "metrics.jsonl").read_text().count("\n") == 1  # step 4, written once

    config = language_model.Config(data=str(text), num_devices=1, **TINY)
    with jax.numpy_dtype_promotion("standard"):
        one = ex.run(language_model.EXPERIMENT, config, tmp_path / "one")
    assert 0 < one["valid"]["nats"] < 5 and abs(one["valid"]["nats"] - two["valid"]["nats"]) < 1e-5, (one, two)


def test_half_a_description_of_the_run_is_a_one_line_error():
    with pytest.raises(ValueError, match="go together: give all three or none"):
        distributed.initialize("localhost:1234", 0, 0)
    assert distributed.initialize() is False and distributed.is_primary()  # no run described: one process
