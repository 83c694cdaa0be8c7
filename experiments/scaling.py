r"""Data-parallel scaling of the LSTM LM's training step (see seqjax.experiments.scaling).

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python experiments/scaling.py --workdir=runs/scaling_cpu
    python experiments/scaling.py --workdir=runs/scaling_gpu --devices=1,2,4,8 --hidden=650   # a GPU machine
    python experiments/scaling.py --workdir=runs/scaling_gpu_bf16 --devices=1 --hidden=650 --compute_dtype=bfloat16

On CPU the forced devices share the machine's cores: the rows prove that the path runs and show its
overhead, not a speed-up. Writes scaling.json, scaling.csv and scaling.png into --workdir.
"""

import dataclasses
import sys

import jax
from absl import app, flags

from seqjax import plots, precision, workdir
from seqjax.experiments.flag_checks import positive_ints
from seqjax.experiments.scaling import Config, model_summary, num_params, run

WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
DEVICES = flags.DEFINE_list("devices", ["1", "2", "4", "8"], "Device counts to measure (the first is the reference).")
HIDDEN = flags.DEFINE_integer("hidden", 200, "LSTM hidden size (= embedding size).", lower_bound=1)
NUM_LAYERS = flags.DEFINE_integer("num_layers", 2, "LSTM layers.", lower_bound=1)
VOCAB = flags.DEFINE_integer("vocab", 10_000, "Vocabulary size (random tokens).", lower_bound=2)
BPTT = flags.DEFINE_integer("bptt", 20, "Window length.", lower_bound=1)
BATCH_PER_DEVICE = flags.DEFINE_integer("batch_per_device", 20, "Weak scaling: rows per device.", lower_bound=1)
GLOBAL_BATCH = flags.DEFINE_integer("global_batch", 160, "Strong scaling: rows in all.", lower_bound=1)
STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per row.", lower_bound=1)
WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first (compilation).", lower_bound=1)
COMPUTE_DTYPE = flags.DEFINE_enum("compute_dtype", "float32", list(precision.COMPUTE_DTYPES),
                                  "bfloat16: bfloat16 products, float32 parameters and state.")  # fmt: skip

flags.register_validator("devices", positive_ints, "--devices must be a list of positive integers")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = Config(devices=tuple(int(v) for v in DEVICES.value), hidden=HIDDEN.value, num_layers=NUM_LAYERS.value,
                    vocab=VOCAB.value, bptt=BPTT.value, batch_per_device=BATCH_PER_DEVICE.value,
                    global_batch=GLOBAL_BATCH.value, steps=STEPS.value, warmup=WARMUP.value,
                    compute_dtype=COMPUTE_DTYPE.value)  # fmt: skip
    try:
        out = workdir.claim(WORKDIR.value, "scaling", dataclasses.asdict(config))
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


if __name__ == "__main__":
    sys.exit(app.run(main))
