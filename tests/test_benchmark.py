"""benchmarks/benchmark.py: the FLOP count, shape parsing, ratios and an end-to-end run with a tiny config."""

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import harness as benchmark_lib
import pytest
from absl import flags

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "benchmark.py"


@pytest.fixture(scope="module")
def benchmark():
    return benchmark_lib


def test_train_step_flops(benchmark):
    shape = benchmark.Shape(batch=2, time=3, hidden=4)
    # 3 x forward, forward = 2 * B * T * (D + H) * G * H with D = H = 4.
    assert benchmark.train_step_flops("rnn", shape) == 3 * 2 * 2 * 3 * 8 * 1 * 4 == 1152
    assert benchmark.train_step_flops("lstm", shape) == 4 * 1152
    assert benchmark.train_step_flops("gru", shape) == 3 * 1152
    big = benchmark.Shape(32, 128, 256)
    assert benchmark.train_step_flops("lstm", big) == 6 * 32 * 128 * 512 * 4 * 256


def test_parse_shape(benchmark):
    assert benchmark.parse_shape("32x128x256") == benchmark.Shape(32, 128, 256)
    assert str(benchmark.parse_shape(" 16X100x128 ")) == "16x100x128"
    assert benchmark.parse_shape("2x3x4").input_size == 4
    for bad in ("32x128", "32x128x256x1", "0x1x2", "ax1x2", "-1x2x3", "1.5x2x3", ""):
        with pytest.raises(ValueError, match="malformed shape"):
            benchmark.parse_shape(bad)


def test_ratios_and_table(benchmark):
    def row(label, impl, tokens_per_s):
        return {
            "cell": "gru",
            "shape": "2x3x4",
            "label": label,
            "impl": impl,
            "status": "ok",
            "tokens_per_s": tokens_per_s,
            "gflops_per_s": 1.0,
            "first_call_s": 0.5,
            "peak_mib": 100.0,
        }

    skipped = {"cell": "gru", "shape": "2x3x4", "label": "torch", "impl": "torch", "status": "skipped"}
    skipped["reason"] = benchmark.TORCH_MISSING
    rows = benchmark.add_ratios([row("seqjax fused", "seqjax", 300.0), row("flax GRUCell", "flax", 200.0), skipped])
    assert rows[0]["vs_best_flax"] == pytest.approx(1.5)
    assert rows[0]["vs_torch"] is None
    table = benchmark.format_table(rows)
    assert "| gru | 2x3x4 | seqjax fused | 300 |" in table
    with_peak = benchmark.format_table(benchmark.add_peak_fraction(rows, peak=4.0))
    assert "| gru | 2x3x4 | seqjax fused | 300 | 1.00 | 25% |" in with_peak
    assert "vs best flax" in table and "vs torch" not in table
    assert benchmark.TORCH_MISSING in table
    lm_rows = benchmark.add_ratios([row("seqjax lm", "seqjax_lm", 100.0), row("torch lm", "torch_lm", 400.0)])
    assert "| gru | 2x3x4 | seqjax lm | 100 | 1.00 | 0.50 | 100 | - | 0.25x |" in benchmark.format_table(lm_rows)


@pytest.mark.parametrize(
    ("refused", "message"),
    [
        (lambda: benchmark_lib.check_names(["lstm", "elman"], benchmark_lib.KNOWN_CELLS, "cell"),
         "unknown cell 'elman'; known: rnn, lstm, gru"),
        (lambda: benchmark_lib.check_shapes(["32x128"]), "malformed shape '32x128'"),
        (lambda: benchmark_lib.check_shapes([]), "give at least one shape"),
        (lambda: benchmark_lib.check_unrolls(["1", "0"]), "expected a list of positive integers"),
        (lambda: benchmark_lib.check_names(["zaremba_huge"], ("zaremba_small", "zaremba_large"), "LM preset"),
         "unknown LM preset 'zaremba_huge'; known: zaremba_small, zaremba_large"),
    ],
)  # fmt: skip
def test_the_flags_validators_refuse_in_one_line(refused, message):
    """benchmark.py's validators: absl prints their message in one line before main, so before the workdir
    (tests/test_bad_input.py shows it for a flag validator of fused_vs_scan.py)."""
    with pytest.raises(flags.ValidationError, match=f"^{re.escape(message)}"):
        refused()
    assert benchmark_lib.check_shapes(["2x3x4"]) and benchmark_lib.check_unrolls(["1", "4"])


def test_end_to_end(tmp_path):
    workdir = tmp_path / "bench"
    command = [
        sys.executable,
        str(SCRIPT),
        f"--workdir={workdir}",
        "--shapes=2x3x4",
        "--cells=rnn",  # one flax row (lstm has two)
        "--impls=seqjax,flax",
        "--steps=2",
        "--warmup=1",
        "--seqjax_unrolls=1",
        "--rounds=1",  # interleaved rounds are tested in test_rounds_are_interleaved_and_pooled
        "--budget_s=0",
        "--lm_presets=",
        "--peak_size=256",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((workdir / "results.json").read_text())
    rows = results["results"]
    assert [(r["label"], r["cell"], r["shape"]) for r in rows] == [
        ("seqjax fused", "rnn", "2x3x4"),
        ("seqjax scan(unroll=1)", "rnn", "2x3x4"),
        ("flax SimpleCell", "rnn", "2x3x4"),
    ]
    for r in rows:
        assert r["status"] == "ok"
        assert r["tokens_per_s"] > 0 and r["gflops_per_s"] > 0 and r["peak_mib"] > 0
        assert len(r["step_times_s"]) == 2 and len(r["round_medians_s"]) == 1  # 2 steps x 1 round
        assert 0 < r["peak_fraction"] < 2
    assert max(r["vs_best_flax"] for r in rows) >= 1.0
    assert [r["is_default"] for r in rows] == [True, False, False]  # B*H = 8: unroll fuses
    assert results["metadata"]["flags"]["cells"] == ["rnn"]
    assert sorted(p.name for p in workdir.iterdir()) == ["flags.json", "results.json", "results.md"]
    report = (workdir / "results.md").read_text()
    assert "vs best flax" in report and "| seqjax fused * |" in report and "matmul peak:" in report
    assert results["metadata"]["matmul_peak_gflops"]["jax"] > 0
    assert "vs best flax" in proc.stdout


def test_rounds_are_interleaved_and_pooled(benchmark):
    """Every spec runs once per round, rounds in turn; step times are pooled into one median per spec."""
    calls = []
    times = {"a": iter([[1.0, 1.0], [3.0, 3.0], [2.0, 2.0]]), "b": iter([[4.0], [4.0], [5.0]])}

    def fake_run(spec):
        calls.append(spec["label"])
        row = {**spec, "status": "ok", "step_times_s": next(times[spec["label"]]), "first_call_s": 1.0}
        return benchmark.with_rates({**row, "peak_mib": float(len(calls))})

    specs = [
        {"impl": impl, "label": label, "cell": "rnn", "shape": "2x5x4"}
        for impl, label in (("seqjax", "a"), ("flax", "b"))
    ]
    rows = benchmark.run_benchmark(specs, run=fake_run, rounds=3)
    assert calls == ["a", "b", "a", "b", "a", "b"]
    by_label = {r["label"]: r for r in rows}
    assert by_label["a"]["median_step_s"] == 2.0 and by_label["a"]["round_medians_s"] == [1.0, 3.0, 2.0]
    assert by_label["a"]["tokens_per_s"] == 10 / 2.0
    assert by_label["b"]["median_step_s"] == 4.0 and by_label["b"]["peak_mib"] == 6.0
    assert by_label["a"]["vs_best_flax"] == (10 / 2.0) / (10 / 4.0)


def test_time_steps_stops_at_the_budget_after_three_timed_steps(benchmark):
    calls = []
    first, times = benchmark.time_steps(lambda: calls.append(time.sleep(0.01)), lambda x: x, 10, 5, budget_s=0.02)
    assert first > 0 and len(times) == benchmark.MIN_TIMED_STEPS
    assert len(calls) < 1 + 5 + 10
    _, unlimited = benchmark.time_steps(lambda: None, lambda x: x, 7, 2)
    assert len(unlimited) == 7


def test_language_model_rows_count_their_flops_and_time_the_experiments_step(benchmark):
    """zaremba_small: 400 tokens; per token 2 LSTM layers of 2 (200 + 200) 800 and a 2 * 200 * 10000 softmax, x3."""
    import lm_benchmark

    assert lm_benchmark.lm_step_flops("zaremba_small") == 3 * 400 * (2 * (2 * 400 * 800) + 2 * 200 * 10_000)
    # char_rnn: 32 x 64 tokens, 2 layers of 2 (256 + 256) 1024, a 65-way softmax over tiny Shakespeare's characters
    assert lm_benchmark.lm_step_flops("char_rnn") == 3 * 2048 * (2 * (2 * 512 * 1024) + 2 * 256 * 65)
    specs = lm_benchmark.build_lm_specs(["zaremba_small"], ["seqjax", "flax"], steps=2, warmup=0, budget_s=0.0)
    assert [(s["impl"], s["shape"]) for s in specs] == [("seqjax_lm", "20x20x200")]
    row = benchmark.measure(specs[0])
    assert row["status"] == "ok" and len(row["step_times_s"]) == 2 and row["tokens_per_s"] > 0
    assert row["loss"] == pytest.approx(20 * math.log(10_000), rel=0.05)  # random tokens, near-uniform model at init
