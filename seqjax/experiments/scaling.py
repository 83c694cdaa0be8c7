"""Data-parallel scaling of the LSTM language model's training step: step time and tokens/s on 1, 2, 4, ... devices.

The step is ``language_model.py``'s own (``make_lm_training``: embedding -> stacked LSTM -> softmax, truncated
BPTT with the carry in ``TrainState.model_state``, clipping, SGD) on random tokens, run through
``seqjax.parallel`` on a mesh of the first n devices:

- **weak scaling**: ``batch_per_device`` rows per device, so the global batch grows with n;
  ideal: tokens/s grows n-fold at a constant step time.
- **strong scaling**: a fixed ``global_batch`` split over n devices; ideal: the step time falls n-fold.

The one-device rows are the reference: plain ``jax.jit`` on one device, no mesh (as ``loop.fit`` runs a
one-device run). Each row times ``steps`` steps after ``warmup`` (the compilation); the median step.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

import jax
import numpy as np

from seqjax import parallel
from seqjax.experiments import language_model
from seqjax.models import lm


@dataclasses.dataclass(frozen=True)
class Config:
    devices: tuple[int, ...] = (1, 2, 4, 8)
    hidden: int = 200
    num_layers: int = 2
    vocab: int = 10_000
    bptt: int = 20
    batch_per_device: int = 20
    global_batch: int = 160
    steps: int = 10
    warmup: int = 2
    compute_dtype: str = "float32"  # "bfloat16": mixed precision (seqjax.precision)
    seed: int = 0


def _lm_config(config: Config, batch_size: int) -> language_model.Config:
    return dataclasses.replace(
        language_model.Config(**language_model.PRESETS["zaremba_small"]),
        hidden=config.hidden,
        num_layers=config.num_layers,
        bptt=config.bptt,
        batch_size=batch_size,
        compute_dtype=config.compute_dtype,
        seed=config.seed,
    )


def time_step(config: Config, devices: int, batch_size: int) -> dict[str, Any]:
    """One row: the median step time of the LM step with ``batch_size`` rows on ``devices`` devices."""
    experiment = _lm_config(config, batch_size)
    model = language_model.model_config(experiment, config.vocab)
    training, _ = language_model.make_lm_training(experiment, model, steps_per_epoch=1_000_000)
    state = language_model.initial_state(experiment, model, training)
    rng = np.random.default_rng(config.seed)
    windows = config.steps + config.warmup
    streams = rng.integers(0, config.vocab, size=(batch_size, windows * config.bptt + 1), dtype=np.int32)
    if devices == 1:
        step = jax.jit(training.step, donate_argnums=0)
        place = jax.device_put
    else:
        mesh = parallel.data_mesh(devices)
        parallel.check_divisible(batch_size, mesh)
        state = parallel.place_state(state, mesh)
        step = parallel.data_parallel_step(training, mesh, state)
        place = lambda batch: parallel.shard_batch(batch, mesh)
    streams = place(streams)
    times = []
    for k in range(windows):
        batch = (streams, np.int32(k), np.bool_(k == 0))
        started = time.perf_counter()
        state, metrics = step(state, batch if devices == 1 else parallel.shard_batch(batch, mesh))
        jax.block_until_ready(metrics["loss"])
        if k >= config.warmup:
            times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    return {
        "devices": devices,
        "global_batch": batch_size,
        "per_device_batch": batch_size // devices,
        "step_ms": 1000 * seconds,
        "tokens_per_s": batch_size * config.bptt / seconds,
        "loss": float(metrics["loss"]),
    }


def run(config: Config) -> list[dict[str, Any]]:
    """Weak then strong scaling rows, each with its speed-up and efficiency against its one-device row."""
    if max(config.devices) > jax.device_count():
        raise ValueError(f"--devices={max(config.devices)}: {jax.device_count()} device(s) are visible "
                         "(on CPU: XLA_FLAGS=--xla_force_host_platform_device_count=8)")  # fmt: skip
    rows = []
    for mode in ("weak", "strong"):
        base = None
        for n in config.devices:
            batch = n * config.batch_per_device if mode == "weak" else config.global_batch
            row = {"mode": mode, **time_step(config, n, batch)}
            base = base or row
            row["speedup_tokens_per_s"] = row["tokens_per_s"] / base["tokens_per_s"]
            row["efficiency"] = row["speedup_tokens_per_s"] / (n / base["devices"])
            rows.append(row)
            print(
                f"{mode:6s} {n} devices  batch {batch:4d}  step {row['step_ms']:8.1f} ms  "
                f"{row['tokens_per_s']:10.0f} tokens/s  x{row['speedup_tokens_per_s']:.2f}  "
                f"efficiency {row['efficiency']:.2f}",
                flush=True,
            )
    return rows


def model_summary(config: Config) -> str:
    shape = f"{config.num_layers} x {config.hidden}, V = {config.vocab}, bptt {config.bptt}"
    return f"LSTM LM {shape}, {config.compute_dtype}"


def num_params(config: Config) -> int:
    model = lm.LMConfig(vocab_size=config.vocab, num_layers=config.num_layers, hidden_size=config.hidden)
    shapes = jax.eval_shape(lambda key: lm.init_params(model, key), jax.random.key(0))
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes))
