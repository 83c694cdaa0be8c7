r"""Data-parallel scaling of the LSTM LM's training step (see scaling).

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/scaling.py --workdir=runs/scaling_cpu
    python benchmarks/scaling.py --workdir=runs/scaling_gpu --devices=1,2,4,8 --hidden=650   # a GPU machine
    python benchmarks/scaling.py --workdir=runs/scaling_gpu_bf16 --devices=1 --hidden=650 --compute_dtype=bfloat16

On CPU the forced devices share the machine's cores: the rows prove that the path runs and show its
overhead, not a speed-up. Writes scaling.json, scaling.csv and scaling.png into --workdir.

Data-parallel scaling of the LSTM language model's training step: step time and tokens/s on 1, 2, 4, ... devices
(``--cell``: another cell's, a user's too).

The step is ``language_model.py``'s own (``training_step``: embedding -> stacked LSTM -> softmax, truncated
BPTT with the carry in ``TrainState.model_state``, clipping, SGD) on random tokens, run through
``seqjax.parallel`` on a mesh of the first n devices:

- **weak scaling**: ``batch_per_device`` rows per device, so the global batch grows with n;
  ideal: tokens/s grows n-fold at a constant step time.
- **strong scaling**: a fixed ``global_batch`` split over n devices; ideal: the step time falls n-fold.

The one-device rows are the reference: plain ``jax.jit`` on one device, no mesh (as ``runner.fit`` runs a
one-device run). Each row times ``steps`` steps after ``warmup`` (the compilation); the median step.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

import jax
import numpy as np
from absl import app, flags
from harness import known_cell, positive_ints, sibling_experiments

from seqjax import command_line, parallel, plots, precision, workdir
from seqjax import config as config_lib
from seqjax.config import CELL_HELP
from seqjax.models import lm

sibling_experiments()
import language_model  # noqa: E402  (experiments/language_model.py: the step measured is its own)


@dataclasses.dataclass(frozen=True)
class Config:
    devices: tuple[int, ...] = (1, 2, 4, 8)
    cell: str = "lstm"  # a name seqjax.cells.cell_by_name builds: built-in or a user's
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
    preset = language_model.PRESETS["zaremba_small"]
    return config_lib.build(
        language_model.Config,
        {**preset, "cell": config.cell, "hidden": config.hidden, "num_layers": config.num_layers, "bptt": config.bptt,
         "batch_size": batch_size, "compute_dtype": config.compute_dtype, "seed": config.seed},
    )  # fmt: skip


def time_step(config: Config, devices: int, batch_size: int) -> dict[str, Any]:
    """One row: the median step time of the LM step with ``batch_size`` rows on ``devices`` devices."""
    experiment = _lm_config(config, batch_size)
    training, state = language_model.training_step(experiment, config.vocab, steps_per_epoch=1_000_000)
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
    return f"{config.cell} LM {shape}, {config.compute_dtype}"


def num_params(config: Config) -> int:
    model = lm.LMConfig(vocab_size=config.vocab, cell=config.cell, num_layers=config.num_layers,
                        hidden_size=config.hidden)  # fmt: skip
    shapes = jax.eval_shape(lambda key: lm.init_params(model, key), jax.random.key(0))
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = Config(devices=tuple(int(v) for v in DEVICES.value), cell=CELL.value, hidden=HIDDEN.value,
                    num_layers=NUM_LAYERS.value, vocab=VOCAB.value, bptt=BPTT.value,
                    batch_per_device=BATCH_PER_DEVICE.value, global_batch=GLOBAL_BATCH.value, steps=STEPS.value,
                    warmup=WARMUP.value, compute_dtype=COMPUTE_DTYPE.value)  # fmt: skip
    try:
        record = dataclasses.asdict(config)
        out = workdir.claim(WORKDIR.value, "scaling", record, fixed=tuple(record), defaults={"cell": "lstm"})
        rows = run(config)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    device = jax.devices()[0]
    title = (f"{model_summary(config)} ({num_params(config):,} params) on {jax.device_count()} x "
             f"{device.platform} ({device.device_kind})")  # fmt: skip
    workdir.write_json(out / "scaling.json", {"title": title, "rows": rows})
    workdir.write_csv(out / "scaling.csv", rows)
    plots.scaling_figure(rows, title, out / "scaling.png")
    print(f"{title}\nwrote scaling.json, scaling.csv and scaling.png into {out}")


if __name__ == "__main__":  # the flags exist only when this is the script run: importing it defines none
    WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
    DEVICES = flags.DEFINE_list(
        "devices", ["1", "2", "4", "8"], "Device counts to measure (the first is the reference)."
    )
    CELL = flags.DEFINE_string("cell", "lstm", CELL_HELP)
    HIDDEN = flags.DEFINE_integer("hidden", 200, "Hidden size (= embedding size).", lower_bound=1)
    NUM_LAYERS = flags.DEFINE_integer("num_layers", 2, "Recurrent layers.", lower_bound=1)
    VOCAB = flags.DEFINE_integer("vocab", 10_000, "Vocabulary size (random tokens).", lower_bound=2)
    BPTT = flags.DEFINE_integer("bptt", 20, "Window length.", lower_bound=1)
    BATCH_PER_DEVICE = flags.DEFINE_integer("batch_per_device", 20, "Weak scaling: rows per device.", lower_bound=1)
    GLOBAL_BATCH = flags.DEFINE_integer("global_batch", 160, "Strong scaling: rows in all.", lower_bound=1)
    STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per row.", lower_bound=1)
    WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first (compilation).", lower_bound=1)
    COMPUTE_DTYPE = flags.DEFINE_enum("compute_dtype", "float32", list(precision.COMPUTE_DTYPES),
                                      "bfloat16: bfloat16 products, float32 parameters and state.")  # fmt: skip

    flags.register_validator("devices", positive_ints, "--devices must be a list of positive integers")
    flags.register_validator("cell", known_cell)
    command_line.run(main)
