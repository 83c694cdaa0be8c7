"""Data parallelism (seqjax.parallel through loop.fit): on 8 forced CPU devices, the same parameters as one device."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seqjax import parallel

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory) -> dict:
    """``tests/data_parallel_run.py``'s result: the device count is fixed when JAX starts, hence a process."""
    out = tmp_path_factory.mktemp("data_parallel")
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8".strip()
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "data_parallel_run.py"), str(out)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


@pytest.mark.parametrize("model", ["regressor", "language_model"])
def test_data_parallel_training_equals_one_device(eight_devices, model):
    """8 devices, the same global batch: the parameters agree to float32 rounding after 6 steps (which
    moved them by 0.1 or more), dropout-like noise and a truncated-BPTT carry included."""
    result = eight_devices[model]
    assert eight_devices["devices"] == 8 and result["param_devices"] == 8
    assert result["moved"] > 0.05
    assert result["8"] < 1e-6, result


def test_only_the_large_parameters_are_split_with_shard_params_over(eight_devices):
    """The LM ran with shard_params_over=64 (and matched one device): its [8, 32] and [8, 11] kernels keep one of
    their 8 rows per device; the [11, 8] embedding (11 rows do not split 8 ways), [32] and [11] biases stay whole.
    The regressor ran with 0: everything whole."""
    rows = eight_devices["language_model"]["param_shard_rows"]
    assert rows == {"(11, 8)": 11, "(32,)": 32, "(8, 32)": 1, "(11,)": 11, "(8, 11)": 1}, rows
    regressor = eight_devices["regressor"]["param_shard_rows"]
    assert all(n == int(shape.strip("(,)").split(",")[0]) for shape, n in regressor.items()), regressor


def test_the_carry_is_split_by_rows_and_gradients_are_all_reduced(eight_devices):
    lm = eight_devices["language_model"]
    assert lm["carry_shard_shapes"] == [[1, 8]] and lm["carry_difference"] < 1e-6  # 8 rows over 8 devices
    assert eight_devices["all_reduce_in_step"]


def test_scaling_rows_strong_scaling_takes_the_same_step_on_1_and_2_devices(eight_devices):
    rows = eight_devices["scaling_rows"]
    assert [(r["mode"], r["devices"], r["global_batch"], r["per_device_batch"]) for r in rows] == [
        ("weak", 1, 2, 2), ("weak", 2, 4, 2), ("strong", 1, 4, 4), ("strong", 2, 4, 2)]  # fmt: skip
    assert abs(rows[2]["loss"] - rows[3]["loss"]) < 1e-4 * rows[2]["loss"]  # the same global batch and steps
    assert rows[0]["efficiency"] == 1 and all(r["tokens_per_s"] > 0 for r in rows)


def test_bad_device_counts_are_one_line_errors(eight_devices):
    assert eight_devices["errors"] == [
        "--num_devices=9: 8 cpu device(s) are visible",
        "--batch_size=12 does not split over 8 devices (--num_devices): give a multiple of 8",
    ]
    with pytest.raises(ValueError, match=r"^--num_devices=2: 1 cpu device\(s\) are visible$"):
        parallel.data_mesh(2)  # this process: one CPU device


def test_the_gradient_flow_experiment_trains_data_parallel(eight_devices):
    """The runner's scan of steps draws the batches inside it and splits them by rows: 8 devices take the same
    steps."""
    result = eight_devices["gradient_flow"]
    assert result["moved"] > 0.05 and result["8"] < 1e-6 and result["devices"] == 8, result


def test_word2vec_sparse_sgd_trains_data_parallel(eight_devices):
    """Replicated tables, batches split by rows: jit sums the 8 devices' sparse row updates. The sums of the
    updates to one row come in another order than on one device: 1.1e-6 apart after moving by 1.0 (measured)."""
    result = eight_devices["word2vec"]
    assert result["devices"] == 8 and result["moved"] > 0.5 and result["8"] < 1e-5, result
