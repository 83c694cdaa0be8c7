"""experiments/gradient_flow.py end to end, with tiny settings, into a temporary workdir."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import gradient_flow
import jax
import numpy as np
import pytest
from refusals import refusal

from seqjax import config, runner
from seqjax import experiment as ex

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
INDRNN = "examples/my_cells.py:indrnn"  # a user's cell by its file (the tests run from the repository's root)


@pytest.fixture(autouse=True)
def _standard_promotion():
    """The experiment runs code the strict harness is not for: optax's Adam computes b ** count with
    an int32 count (dtype promotion), and the user's IndRNN writes u * h with u [h], h [b, h] (rank)."""
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        yield


def _read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_run_writes_every_curve_including_a_user_cell(tmp_path):
    """Rows = (cells' carry parts) x snapshots x measures x T; files exist; training moves the loss."""
    config = gradient_flow.Config(
        cells=("rnn", "lstm", INDRNN),
        seq_len=6,
        hidden=4,
        batch=3,
        forget_bias=(0.0, 2.0),
        train_steps=4,
        num_snapshots=2,
        jacobian_examples=2,
    )
    summary = ex.run(gradient_flow.EXPERIMENT, config, tmp_path)
    rows = _read_rows(tmp_path / "gradient_norms.csv")
    # carry parts: rnn 1, lstm (hidden, cell) x 2 forget biases, indrnn 1 -> 6; snapshots 0, 2, 4;
    # measures: grad_norm, jacobian_frobenius, jacobian_spectral.
    assert len(rows) == 6 * 3 * 3 * config.seq_len
    assert {r["label"] for r in rows} == {"rnn", "lstm b_f=0", "lstm b_f=2", INDRNN}
    assert sorted({int(r["train_step"]) for r in rows}) == [0, 2, 4]
    hidden_last = [r for r in rows if r["carry"] == "hidden" and r["steps_back"] == "0" and r["measure"] == "grad_norm"]
    assert all(float(r["ratio"]) == pytest.approx(1.0) for r in hidden_last)
    assert all(np.isfinite(float(r["value"])) and float(r["value"]) >= 0 for r in rows)
    flags = json.loads((tmp_path / "flags.json").read_text())["flags"]
    assert flags["cells"] == list(config.cells)
    assert (tmp_path / "gradient_flow.png").stat().st_size > 10_000
    assert [s["label"] for s in summary["settings"]] == ["rnn", "lstm b_f=0", "lstm b_f=2", INDRNN]
    assert json.loads((tmp_path / "summary.json").read_text())["settings"][0]["snapshots"][0]["train_step"] == 0


def test_linear_mode_matches_the_closed_form(tmp_path):
    """--linear with W = aI: ||dL/dh_t|| / ||dL/dh_T|| = a^(T-t), a = 3 explodes, a = 0.2 vanishes."""
    config = gradient_flow.Config(
        seq_len=12, hidden=5, batch=2, recurrent_scale=(3.0, 0.2), train_steps=0, linear=True, task="random"
    )
    summary = ex.run(gradient_flow.EXPERIMENT, config, tmp_path)
    assert summary["closed_form_max_rel_error"]["3"] < 1e-5
    assert summary["closed_form_max_rel_error"]["0.2"] < 1e-5
    rows = _read_rows(tmp_path / "gradient_norms.csv")
    far = {r["label"]: float(r["ratio"]) for r in rows if r["steps_back"] == "11"}
    assert far["linear RNN x3"] == pytest.approx(3.0**11, rel=1e-5)
    assert far["linear RNN x0.2"] == pytest.approx(0.2**11, rel=1e-5)
    exponents = {r["label"]: r["snapshots"][0]["lyapunov_exponent"] for r in summary["settings"]}
    assert exponents == {"linear RNN x3": pytest.approx(np.log(3.0), rel=1e-5),
                         "linear RNN x0.2": pytest.approx(np.log(0.2), rel=1e-5)}  # fmt: skip


def _cli(tmp_path, *args):
    return subprocess.run(
        [sys.executable, str(EXPERIMENTS / "gradient_flow.py"), f"--workdir={tmp_path / 'w'}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_the_command_line_runs_the_config_its_flags_name_and_refuses_bad_flags(tmp_path):
    """The script's flags make the config an in-process run would take (same config, same numbers: a run's
    numbers depend on its config alone, tests/test_reliability.py), and the script writes what a run writes."""
    ok = _cli(tmp_path, "--cells=gru", "--seq_len=5", "--hidden=3", "--batch=2", "--train_steps=2", "--num_snapshots=1")
    assert ok.returncode == 0, ok.stderr
    assert "gradient_flow.png" in ok.stdout
    config_ = gradient_flow.Config(cells=("gru",), seq_len=5, hidden=3, batch=2, train_steps=2, num_snapshots=1)
    recorded = json.loads((tmp_path / "w" / "flags.json").read_text())["flags"]
    assert recorded == json.loads(json.dumps(config.flat(config_)))
    rows = _read_rows(tmp_path / "w" / "gradient_norms.csv")
    assert len(rows) == 2 * 5 and {r["train_step"] for r in rows} == {"0", "2"}  # snapshots x T, one measure
    unknown = refusal(gradient_flow, f"--workdir={tmp_path / 'u'}", "--cells=rnn,transformer")
    assert "unknown cell 'transformer'" in unknown and "lstm" in unknown and not (tmp_path / "u").exists()
    # the same checks, made when the config is built
    with pytest.raises(config.ConfigError, match=r"^--seq_len must be at least 2, got -3$"):
        gradient_flow.Config(seq_len=-3)
    with pytest.raises(config.ConfigError, match=r"^--loss=every needs --task=random"):
        gradient_flow.Config(loss="every", task="adding")


def test_a_diverging_curve_stops_the_run_in_one_line_naming_its_update(tmp_path):
    """The RNN's parameters overflow at the second update of 1e30 * gradient: no NaN results are written."""
    argv = ["gradient_flow.py", f"--workdir={tmp_path}", "--cells=rnn", "--seq_len=10", "--hidden=8", "--batch=4",
            "--train_steps=10", "--learning_rate=1e30", "--clip=0", "--optimizer=sgd"]  # fmt: skip
    with pytest.raises(runner.NonFiniteError) as error:
        ex.run_command(gradient_flow.EXPERIMENT, argv)
    assert str(error.value) == (
        "update 2 (batch 1) gave a non-finite loss, gradient or parameter: stopped; no checkpoint was saved"
    )
    assert not list(tmp_path.glob("*.csv")) and not (tmp_path / "summary.json").exists()
