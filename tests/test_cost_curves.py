"""benchmarks/cost_curves.py: the log-log slope on exact power laws, tiny curves end to end, and its refusals."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from absl import app, flags
from cost_curves import build_sweep, loglog_slope, upper_half, valid_sizes
from in_process import run_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cost_curves.py"
NO_FIXED = {"batch": None, "length": None, "hidden": None}


@pytest.mark.parametrize("k", [0.0, 0.5, 1.0, 2.0, -1.0])
def test_slope_of_an_exact_power_law_is_its_exponent(k):
    sizes = np.array([3.0, 10.0, 64.0, 1000.0])
    assert loglog_slope(sizes, 7.5 * sizes**k) == pytest.approx(k, abs=1e-12)
    assert loglog_slope(sizes[2:], 0.01 * sizes[2:] ** k) == pytest.approx(k, abs=1e-12)  # two points: exact


def test_slope_needs_two_distinct_positive_sizes():
    for sizes, times in [([8, 8], [1.0, 2.0]), ([8], [1.0]), ([0, 8], [1.0, 2.0]), ([4, 8], [1.0, 0.0])]:
        with pytest.raises(ValueError):
            loglog_slope(sizes, times)


def test_upper_half_is_the_larger_half_or_nothing():
    assert upper_half([4096, 64, 128, 256, 512, 1024, 2048]) == [512, 1024, 2048, 4096]
    assert upper_half([1000, 3000, 10000, 30000, 100000]) == [10000, 30000, 100000]
    assert upper_half([4, 8, 16, 32]) == [16, 32]
    assert upper_half([4, 8]) == []  # one point: no slope


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """cost_curves.py run in this process: ``(exit status, stdout, stderr)`` (``in_process.run_script``)."""
    return run_script(SCRIPT, capsys, *args)


def test_cell_sweep(tmp_path, capsys):
    out = tmp_path / "t"
    args = ["--sweep=T", "--cells=rnn,gru", "--sizes=8,4", "--batch=2", "--hidden=4", "--steps=1", "--warmup=1"]
    code, stdout, stderr = cli(capsys, f"--workdir={out}", *args)
    assert code == 0, stderr
    result = json.loads((out / "results.json").read_text())
    rows = [(r["curve"], r["size"], r["batch"], r["length"], r["hidden"]) for r in result["results"]]
    assert rows == [(cell, t, 2, t, 4) for cell in ("rnn", "gru") for t in (4, 8)]
    for r in result["results"]:
        assert r["step_ms"] > 0 and r["tokens_per_s"] == pytest.approx(2 * r["size"] / (r["step_ms"] / 1e3))
        assert r["path"] == "fused"  # B * H = 8: fused_by_default on any platform
    assert [r["ratio"] for r in result["results"] if r["size"] == 4] == [1.0, 1.0]
    for cell in ("rnn", "gru"):
        times = [r["step_ms"] for r in result["results"] if r["curve"] == cell]
        assert result["slopes"][cell]["all"] == pytest.approx(np.log(times[1] / times[0]) / np.log(2))
        assert result["slopes"][cell]["upper_half"] is None  # two points: the upper half is one
    report = (out / "results.md").read_text()
    assert report.splitlines()[2] == f"`python {SCRIPT} --workdir={out} {' '.join(args)}`"
    assert "## rnn: slope" in report and "## gru: slope" in report and "| 8 | fused |" in report
    assert (out / "cost.png").stat().st_size > 10_000
    assert "| curve | slope, all points | slope, upper half |" in stdout


def test_a_users_cell_sweeps_on_its_scanned_step(tmp_path, capsys):
    """--cell=examples/my_cells.py:indrnn (a user's cell, no fused sequence): its curve, on the scanned step."""
    args = ["--sweep=B", "--cell=examples/my_cells.py:indrnn", "--sizes=1,2", "--length=3", "--hidden=2", "--steps=1"]
    with jax.numpy_rank_promotion("allow"):  # IndRNN's u * h: u [h], h [b, h]
        code, stdout, stderr = cli(capsys, f"--workdir={tmp_path}", *args, "--warmup=0")
    assert code == 0, stderr
    points = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [(p["curve"], p["size"], p["path"]) for p in points] == [
        ("examples/my_cells.py:indrnn", 1, "scan(unroll=1)"),
        ("examples/my_cells.py:indrnn", 2, "scan(unroll=1)"),
    ]
    assert all(p["step_ms"] > 0 for p in points) and "## examples/my_cells.py:indrnn: slope" in stdout


def test_vocab_sweep_times_the_language_model_step(tmp_path, capsys):
    args = ["--sweep=vocab", "--sizes=100,50", "--batch=2", "--length=3", "--hidden=4", "--steps=1", "--warmup=1"]
    code, stdout, stderr = cli(capsys, f"--workdir={tmp_path}", *args)
    assert code == 0, stderr
    result = json.loads((tmp_path / "results.json").read_text())
    assert [(r["curve"], r["vocab"], r["path"]) for r in result["results"]] == [
        ("zaremba_small", 50, "lstm 2 x 4"),
        ("zaremba_small", 100, "lstm 2 x 4"),
    ]
    assert all(r["tokens_per_s"] == pytest.approx(6 / (r["step_ms"] / 1e3)) for r in result["results"])
    assert "| vocab | model | step ms |" in stdout and "| 100 | lstm 2 x 4 |" in stdout
    assert "B=2, T=3, H=4" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "cost.png").stat().st_size > 10_000


def test_preset_sizes_and_defaults():
    sweep = build_sweep("vocab", ["rnn", "lstm", "gru"], None, NO_FIXED, "zaremba_small", 5, 2)
    assert (sweep.batch, sweep.length, sweep.hidden) == (20, 20, 200)  # the preset's
    assert sweep.sizes == (1_000, 3_000, 10_000, 30_000, 100_000)
    sweep = build_sweep("B", ["lstm"], None, NO_FIXED, "zaremba_small", 5, 2)
    assert (sweep.curves, sweep.length, sweep.hidden, sweep.sizes[0], sweep.sizes[-1]) == (("lstm",), 128, 128, 1, 256)


@pytest.mark.parametrize(
    ("sweep", "fixed", "given", "named"),
    [
        ("T", {"length": 64}, (), "--length"),
        ("H", {"hidden": 64}, (), "--hidden"),
        ("vocab", {}, ("cells",), "--cells"),
        ("T", {}, ("preset",), "--preset"),
    ],
)
def test_a_flag_the_sweep_does_not_use_is_refused(sweep, fixed, given, named):
    with pytest.raises(app.UsageError, match=named):
        build_sweep(sweep, ["rnn"], None, {**NO_FIXED, **fixed}, "zaremba_small", 5, 2, given=given)


@pytest.mark.parametrize("sizes", [["8"], ["8", "8"], ["0", "8"], ["-4", "8"], ["x", "8"]])
def test_sizes_need_two_distinct_positive_integers(sizes):
    with pytest.raises(flags.ValidationError, match="at least two distinct positive integers"):
        valid_sizes(sizes)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--sweep=T", "--cells=rnn,nope"], "--cells"),
        (["--sweep=T", "--sizes=8"], "--sizes"),
        (["--sweep=size"], "--sweep"),
        (["--sweep=T", "--length=64"], "--length"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag_and_nothing_is_written(tmp_path, capsys, args, named):
    out = tmp_path / "w"
    code, _, stderr = cli(capsys, f"--workdir={out}", *args)
    assert code == 1
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("cost_curves.py: ") and named in stderr, stderr
    assert not out.exists()
