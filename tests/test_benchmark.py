"""benchmarks/benchmark.py: the FLOP count, shape parsing, ratios and an end-to-end run with a tiny config."""

import dataclasses
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import harness as benchmark_lib
import jax
import numpy as np
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


def test_language_model_rows_count_their_flops_and_time_the_experiments_step(benchmark, monkeypatch):
    """zaremba_small: 400 tokens; per token 2 LSTM layers of 2 (200 + 200) 800 and a 2 * 200 * 10000 softmax, x3."""
    import lm_benchmark

    assert lm_benchmark.lm_step_flops("zaremba_small") == 3 * 400 * (2 * (2 * 400 * 800) + 2 * 200 * 10_000)
    # char_rnn: 32 x 64 tokens, 2 layers of 2 (256 + 256) 1024, a 65-way softmax over tiny Shakespeare's characters
    assert lm_benchmark.lm_step_flops("char_rnn") == 3 * 2048 * (2 * (2 * 512 * 1024) + 2 * 256 * 65)
    specs = lm_benchmark.build_lm_specs(["zaremba_small"], ["seqjax", "flax"], steps=2, warmup=0, budget_s=0.0)
    assert [(s["impl"], s["shape"]) for s in specs] == [("seqjax_lm", "20x20x200")]
    assert lm_benchmark.lm_config("zaremba_small").run.steps_per_call == 10  # what the runner runs, so what is timed
    preset = lm_benchmark.lm_config
    monkeypatch.setattr(
        lm_benchmark,
        "lm_config",
        lambda name: dataclasses.replace(preset(name), run=dataclasses.replace(preset(name).run, steps_per_call=2)),
    )  # fmt: skip  (a quicker test)
    row = benchmark.measure(specs[0])
    assert row["status"] == "ok" and len(row["step_times_s"]) == 2 and row["tokens_per_s"] > 0
    assert row["updates_per_call"] == 2
    # Random tokens: a near-uniform model at first, then it begins to learn the 8 windows (8 updates are run).
    assert 0.8 * 20 * math.log(10_000) < row["loss"] < 1.05 * 20 * math.log(10_000)


def _tiny_specs(cell, impls, dtype, shape="2x3x4"):
    return benchmark_lib.build_specs(
        [cell], [benchmark_lib.parse_shape(shape)], impls, [1], steps=1, warmup=0, budget_s=0.0, dtype=dtype
    )


def test_bfloat16_rows_run_in_bfloat16_and_say_so(benchmark):
    """--dtype=bfloat16: seqjax's parameters cast with precision.cast_floating, Flax's cells in bfloat16; the loss
    of the same LSTM moves by bfloat16's rounding (not 0, under 5%), the FLOP count does not."""
    by_dtype = {}
    for dtype in ("float32", "bfloat16"):
        specs = {s["label"]: s for s in _tiny_specs("lstm", ["seqjax", "flax"], dtype)}
        by_dtype[dtype] = {
            label: benchmark.measure(specs[label]) for label in ("seqjax fused", "flax OptimizedLSTMCell")
        }
    for label, row in by_dtype["bfloat16"].items():
        assert row["status"] == "ok" and row["dtype"] == "bfloat16" and len(row["step_times_s"]) == 1, label
        f32 = by_dtype["float32"][label]
        assert f32["dtype"] == "float32" and row["flops_per_step"] == f32["flops_per_step"]
        assert row["loss"] != f32["loss"] and row["loss"] == pytest.approx(f32["loss"], rel=0.05), label
    table = benchmark.format_table(benchmark.add_ratios(list(by_dtype["bfloat16"].values())))
    assert "| cell | B x T x H | dtype | impl |" in table and "| lstm | 2x3x4 | bfloat16 | seqjax fused" in table


def test_torch_bfloat16_row(benchmark):
    """torch 2.13 runs bfloat16 RNN, LSTM and GRU on CPU too (slowly: no bfloat16 products in hardware here); a
    missing kernel would be a one-line note (test_a_refused_dtype_is_a_note_and_float32_failures_stay_errors)."""
    pytest.importorskip("torch")
    rows = {dtype: benchmark.measure(_tiny_specs("gru", ["torch"], dtype)[0]) for dtype in ("float32", "bfloat16")}
    assert rows["bfloat16"]["status"] == "ok" and rows["bfloat16"]["dtype"] == "bfloat16"
    assert rows["bfloat16"]["loss"] != rows["float32"]["loss"]
    assert rows["bfloat16"]["loss"] == pytest.approx(rows["float32"]["loss"], rel=0.05)


def test_jax_rnn_is_the_seqjax_lstm_in_cudnn_layout(benchmark):
    """The jax_rnn row runs jax.experimental.rnn.lstm on the seqjax LSTM's weights (cudnn_lstm_weights): its
    reference implementation (lstm_ref, the cuDNN LSTM's semantics, runs on CPU) gives seqjax's outputs."""
    import jax.numpy as jnp
    from jax.experimental import rnn

    import seqjax

    batch, time, d, h = 2, 5, 3, 4  # D != H: a transposed block would not fit
    keys = jax.random.split(jax.random.key(1), 3)
    params = seqjax.lstm(forget_bias=0.0).init_params(keys[0], d, h)
    params["b"] = jax.random.normal(keys[1], (4 * h,))  # every gate's bias in its place
    xs = jax.random.normal(keys[2], (batch, time, d))
    expected = seqjax.unroll(seqjax.lstm(forget_bias=0.0), params, xs).outputs
    weights = benchmark.cudnn_lstm_weights(params)
    assert weights.shape == (rnn.get_num_params_in_lstm(d, h, 1, False),)
    zeros = jnp.zeros((1, batch, h))
    lengths = jnp.full((batch,), time, jnp.int32)
    unpacked = rnn.unpack_lstm_weights(weights, d, h, 1, False)
    outputs, _, _ = rnn.lstm_ref(xs, zeros, zeros, *unpacked, lengths, d, h, 1, 0.0, False)
    np.testing.assert_allclose(outputs, expected, atol=1e-5, rtol=1e-5)


def test_jax_rnn_row_needs_a_gpu(benchmark):
    """On CPU jax.experimental.rnn.lstm has no lowering (its shape rule already asks the CUDA plugin): the row is
    skipped with one line; on a GPU it measures the seqjax row's LSTM, so the losses agree."""
    assert [s["label"] for s in _tiny_specs("gru", ["jax_rnn"], "float32")] == []  # LSTM only
    (spec,) = _tiny_specs("lstm", ["jax_rnn"], "float32")
    row = benchmark.measure(spec)
    if jax.devices()[0].platform != "gpu":
        assert row["status"] == "skipped" and row["reason"] == benchmark.JAX_RNN_NEEDS_GPU.format(platform="cpu")
        assert "needs a GPU (cuDNN)" in benchmark.notes_for([row])[0]
    else:  # cuDNN may take TF32 products
        seqjax_row = benchmark.measure(_tiny_specs("lstm", ["seqjax"], "float32")[0])
        assert row["status"] == "ok" and row["loss"] == pytest.approx(seqjax_row["loss"], rel=1e-2)


def test_a_refused_dtype_is_a_note_and_float32_failures_stay_errors(benchmark, monkeypatch):
    def refuse(spec):
        raise ValueError("Unknown output type bfloat16\nsecond line")

    monkeypatch.setattr(benchmark, "measure_jax", refuse)
    (spec,) = _tiny_specs("lstm", ["jax_rnn"], "bfloat16")
    row = benchmark.measure(spec)
    assert row["status"] == "skipped"
    assert row["reason"] == "jax.experimental.rnn lstm 2x3x4 refuses bfloat16: ValueError: Unknown output type bfloat16"
    with pytest.raises(ValueError, match="Unknown output type"):
        benchmark.measure({**spec, "dtype": "float32"})
    lm = {"impl": "seqjax_lm", "label": "lm", "cell": "lm zaremba_small", "shape": "20x20x200", "dtype": "bfloat16"}
    assert benchmark.measure(lm)["reason"] == benchmark.LM_FLOAT32_ONLY.format(dtype="bfloat16")
    with pytest.raises(ValueError, match="unknown dtype 'float16'; known: float32, bfloat16"):
        _tiny_specs("lstm", ["seqjax"], "float16")


def test_ratios_group_by_dtype_and_include_jax_rnn(benchmark):
    def row(impl, dtype, tokens_per_s):
        return {"cell": "lstm", "shape": "2x3x4", "label": impl, "impl": impl, "dtype": dtype, "status": "ok",
                "tokens_per_s": tokens_per_s, "gflops_per_s": 1.0, "first_call_s": 0.5, "peak_mib": 10.0}  # fmt: skip

    rows = benchmark.add_ratios(
        [row("seqjax", "bfloat16", 300.0), row("jax_rnn", "bfloat16", 200.0), row("jax_rnn", "float32", 100.0)]
    )
    assert rows[0]["vs_jax_rnn"] == pytest.approx(1.5) and rows[0]["vs_torch"] is None
    table = benchmark.format_table(rows)
    assert "| vs best flax | vs jax_rnn |" in table and "| lstm | 2x3x4 | bfloat16 | seqjax | 300 |" in table
    peak = benchmark.matmul_peak(["jax"], run=lambda spec: {"status": "ok", "gflops_per_s": len(spec["dtype"])},
                                 dtype="bfloat16")  # fmt: skip
    assert peak == {"jax": 8, "size": benchmark.PEAK_SIZE_DEFAULT, "dtype": "bfloat16", "peak": 8}


def test_an_unknown_dtype_is_a_one_line_usage_error(tmp_path):
    workdir = tmp_path / "bench"
    command = [sys.executable, str(SCRIPT), f"--workdir={workdir}", "--dtype=float16"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "benchmark.py: flag --dtype=float16: value should be one of <float32|bfloat16>"
    assert not workdir.exists()


def test_a_users_cell_gets_the_seqjax_rows_only_and_a_note(benchmark):
    """--cell=examples/my_cells.py:indrnn: no Flax or PyTorch rows (no counterpart), no fused row (it has no fused
    sequence: the scan is unroll's default), no FLOP count; a user's cell with a fused sequence keeps its fused row."""
    indrnn, gru = "examples/my_cells.py:indrnn", "seqjax.cells:gru"  # gru: a factory function, found by its module
    specs = benchmark.build_specs([indrnn, gru], [benchmark.Shape(2, 3, 4)], ["seqjax", "flax", "torch"], [1], 1, 0)
    assert [(s["cell"], s["label"]) for s in specs] == [
        (indrnn, "seqjax scan(unroll=1)"),
        (gru, "seqjax fused"),
        (gru, "seqjax scan(unroll=1)"),
    ]
    with jax.numpy_rank_promotion("allow"):  # IndRNN's u * h: u [h], h [b, h]
        row = benchmark.measure(specs[0])  # the worker's work, in this process
    assert row["status"] == "ok" and row["tokens_per_s"] > 0 and row["gflops_per_s"] is None and row["is_default"]
    table = benchmark.format_table(benchmark.add_ratios(benchmark.add_peak_fraction([row], peak=10.0)))
    assert f"| {indrnn} | 2x3x4 | float32 | seqjax scan(unroll=1) * | {row['tokens_per_s']:,.0f} | - |" in table
    assert f"- {indrnn}: seqjax rows only (Flax, PyTorch and jax.experimental.rnn have no counterpart;" in table
