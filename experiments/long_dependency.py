r"""Long-dependency benchmarks: RNN vs LSTM vs GRU on the adding, copy and temporal-order problems.

    python experiments/long_dependency.py --task=adding --seq_lens=200 --train_steps=2000 --workdir=runs/adding200
    python experiments/long_dependency.py --task=copy --seq_lens=10,50 --cells=lstm,gru --workdir=runs/copy

Trains every cell at every length (resuming what a previous run left in --workdir), and writes
results.csv/json, gradient_profiles.csv, success.png, gradient_heatmap.png and learning_curves.png.
See seqjax.experiments.long_dependency for the tasks, losses and criteria.
"""

import sys

from absl import app, flags

from seqjax import initializers, train, workdir
from seqjax.cells import BUILTIN_CELLS
from seqjax.checkpoints import CheckpointMismatch
from seqjax.experiments import distributed_flags, entry
from seqjax.experiments.flag_checks import known_cells, positive_ints
from seqjax.experiments.long_dependency import TASKS, Config, run

CELLS = flags.DEFINE_list(
    "cells", ["rnn", "lstm", "gru"], f"Cells: {', '.join(BUILTIN_CELLS)}, or 'module:attr' for your own."
)
TASK = flags.DEFINE_enum("task", "adding", TASKS, "The synthetic task.")
SEQ_LENS = flags.DEFINE_list("seq_lens", ["50", "100", "200"], "Sequence lengths T (copy: the delay).")
HIDDEN = flags.DEFINE_integer("hidden", 128, "Hidden size.", lower_bound=1)
BATCH = flags.DEFINE_integer("batch", 50, "Batch size.", lower_bound=1)
TRAIN_STEPS = flags.DEFINE_integer("train_steps", 2000, "Updates per cell and length.", lower_bound=1)
OPTIMIZER = flags.DEFINE_enum("optimizer", "adam", train.OPTIMIZERS, "Optimizer.")
LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Learning rate.", lower_bound=0.0)
SCHEDULE = flags.DEFINE_enum("schedule", "constant", train.SCHEDULES, "Learning-rate schedule.")
CLIP = flags.DEFINE_enum("clip", "global_norm", train.CLIPPING, "Gradient clipping.")
CLIP_THRESHOLD = flags.DEFINE_float("clip_threshold", 1.0, "Clipping threshold.", lower_bound=0.0)
RECURRENT_INIT = flags.DEFINE_enum("recurrent_init", "orthogonal", initializers.RECURRENT_INITS, "Recurrent init.")
RECURRENT_SCALE = flags.DEFINE_float("recurrent_scale", 1.0, "Multiplier of the recurrent init.", lower_bound=0.0)
FORGET_BIAS = flags.DEFINE_float("forget_bias", 1.0, "Initial LSTM forget-gate bias.")
TEST_BATCHES = flags.DEFINE_integer("test_batches", 10, "Held-out batches for the test metric.", lower_bound=1)
LOG_EVERY = flags.DEFINE_integer("log_every", 100, "Metrics every this many steps.", lower_bound=1)
CHECKPOINT_EVERY = flags.DEFINE_integer("checkpoint_every", 500, "Checkpoint every this many steps.", lower_bound=1)
PROFILE_EVERY = flags.DEFINE_integer("profile_every", 250, "Gradient profile every this many steps.", lower_bound=1)
NUM_DEVICES = flags.DEFINE_integer(
    "num_devices",
    0,
    "Split every batch over this many devices (data parallel; --batch must divide); 0: all.",
    lower_bound=0,
)
SEED = flags.DEFINE_integer("seed", 0, "Random seed.")
WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)


flags.register_validator("cells", known_cells, "--cells must name at least one cell")
flags.register_validator("seq_lens", positive_ints, "--seq_lens must be a list of positive integers")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    entry.quiet_orbax()
    config = Config(
        cells=tuple(CELLS.value),
        task=TASK.value,
        seq_lens=tuple(int(v) for v in SEQ_LENS.value),
        hidden=HIDDEN.value,
        batch=BATCH.value,
        train_steps=TRAIN_STEPS.value,
        optimizer=OPTIMIZER.value,
        learning_rate=LEARNING_RATE.value,
        schedule=SCHEDULE.value,
        clip=CLIP.value,
        clip_threshold=CLIP_THRESHOLD.value,
        recurrent_init=RECURRENT_INIT.value,
        recurrent_scale=RECURRENT_SCALE.value,
        forget_bias=FORGET_BIAS.value,
        test_batches=TEST_BATCHES.value,
        log_every=LOG_EVERY.value,
        checkpoint_every=CHECKPOINT_EVERY.value,
        profile_every=PROFILE_EVERY.value,
        num_devices=NUM_DEVICES.value,
        seed=SEED.value,
    )
    distributed_flags.start(config.num_devices, config.batch, "--batch")
    try:
        run(config, WORKDIR.value)
    except (workdir.WorkdirError, CheckpointMismatch) as e:  # bad input the flags could not see
        raise app.UsageError(str(e)) from e
    print(f"wrote results.csv, gradient_profiles.csv and figures into {WORKDIR.value}")


if __name__ == "__main__":
    sys.exit(app.run(main))
