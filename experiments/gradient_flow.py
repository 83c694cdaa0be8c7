r"""RNN vs LSTM vs GRU: the gradient norm ||dL/dh_t|| at every time step, at initialisation and in training.

A loss is put on the last hidden state (or on every step); one backward pass through additive zero
probes gives dL/dcarry_t for all t (both h and c for an LSTM). Each curve is the batch mean of the
per-example norms divided by ||dL/dh_T||, against the distance T - t from the loss.
With --train_steps > 0 the cells are also trained (Adam, gradient clipping) on --task and measured
again at --num_snapshots points, on the same evaluation batch.

    python experiments/gradient_flow.py --workdir=runs/gradient_flow
    python experiments/gradient_flow.py --linear --recurrent_scale=3,0.2 --seq_len=30 --workdir=runs/linear
    python experiments/gradient_flow.py --cells=lstm --forget_bias=0,1,3 --train_steps=0 --workdir=runs/fb
    python experiments/gradient_flow.py --cells=rnn,lstm,gru,attention --workdir=runs/gf_attention

'attention' in --cells adds a single causal self-attention layer on the same inputs and measures
||dL/dx_t|| (the gradient w.r.t. the inputs) for every model, drawn in input_gradient_flow.png.

Writes into --workdir: flags.json, gradient_norms.csv (one row per curve, snapshot, carry part and
time step), summary.json (ratios at fixed distances, losses, spectral radii) and gradient_flow.png.
"""

import math
import sys
from collections.abc import Sequence
from pathlib import Path

from absl import app, flags

from seqjax import initializers, workdir
from seqjax.cells import BUILTIN_CELLS
from seqjax.experiments.flag_checks import known_cells
from seqjax.experiments.gradient_flow import ATTENTION, TASKS, Config, run, settings

CELLS = flags.DEFINE_list(
    "cells",
    ["rnn", "lstm", "gru"],
    f"Cells to compare: {', '.join(BUILTIN_CELLS)}, or 'module:attr' for your own; '{ATTENTION}' adds a causal "
    "self-attention layer and the input-gradient figure.",
)
SEQ_LEN = flags.DEFINE_integer("seq_len", 100, "Sequence length T.", lower_bound=2)
HIDDEN = flags.DEFINE_integer("hidden", 128, "Hidden size H.", lower_bound=1)
INPUT_SIZE = flags.DEFINE_integer("input_size", 32, "Input size D of --task=random.", lower_bound=1)
BATCH = flags.DEFINE_integer("batch", 32, "Batch size (measurement and training).", lower_bound=1)
RECURRENT_INIT = flags.DEFINE_enum(
    "recurrent_init", "orthogonal", initializers.RECURRENT_INITS, "Initialiser of each recurrent [H, H] block."
)
RECURRENT_SCALE = flags.DEFINE_list("recurrent_scale", ["1.0"], "Multipliers of the recurrent init: one curve each.")
SPECTRAL_RADIUS = flags.DEFINE_float("spectral_radius", 1.0, "Target radius of --recurrent_init=gaussian.")
FORGET_BIAS = flags.DEFINE_list("forget_bias", ["1.0"], "Initial LSTM forget-gate biases: one LSTM curve each.")
LOSS = flags.DEFINE_enum("loss", "last", ["last", "every"], "Loss on the last step only, or on every step.")
TASK = flags.DEFINE_enum("task", "adding", TASKS, "adding (Le et al. 2015), adding_hochreiter (1997), random.")
TRAIN_STEPS = flags.DEFINE_integer(
    "train_steps", 300, "0: at initialisation only; N: also train N steps.", lower_bound=0
)
NUM_SNAPSHOTS = flags.DEFINE_integer(
    "num_snapshots", 2, "Measurements spread over training (after step 0).", lower_bound=1
)
LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.", lower_bound=0.0)
CLIP = flags.DEFINE_float("clip", 1.0, "Clip gradients to this global norm (0: no clipping).", lower_bound=0.0)
JACOBIAN_EXAMPLES = flags.DEFINE_integer(
    "jacobian_examples", 0, "Also record ||dy_T/dcarry_t|| (Frobenius, spectral) for this many examples.", lower_bound=0
)
LINEAR = flags.DEFINE_bool(
    "linear", False, "Lecture example: linear RNN h_t = a h_(t-1) + x_t W (W_hh = aI, a from --recurrent_scale)."
)
NUM_DEVICES = flags.DEFINE_integer(
    "num_devices", 1, "Train data-parallel over this many devices (--batch must split); 0: all.", lower_bound=0
)
SEED = flags.DEFINE_integer("seed", 0, "Random seed.")
WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)


def _floats(values: Sequence[str], positive: bool) -> bool:
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return False
    return bool(numbers) and all(math.isfinite(x) and (x > 0 or not positive) for x in numbers)


flags.register_validator(
    "recurrent_scale", lambda v: _floats(v, positive=True), "--recurrent_scale must be a list of positive numbers"
)
flags.register_validator("forget_bias", lambda v: _floats(v, positive=False), "--forget_bias must be a list of numbers")
flags.register_validator(
    "cells",
    lambda names: names == [ATTENTION] or known_cells([n for n in names if n != ATTENTION]),
    "--cells must name at least one cell",
)


def config_from_flags() -> Config:
    return Config(
        cells=tuple(CELLS.value),
        seq_len=SEQ_LEN.value,
        hidden=HIDDEN.value,
        input_size=INPUT_SIZE.value,
        batch=BATCH.value,
        recurrent_init=RECURRENT_INIT.value,
        recurrent_scales=tuple(float(s) for s in RECURRENT_SCALE.value),
        spectral_radius=SPECTRAL_RADIUS.value,
        forget_biases=tuple(float(b) for b in FORGET_BIAS.value),
        loss=LOSS.value,
        task=TASK.value,
        train_steps=TRAIN_STEPS.value,
        num_snapshots=NUM_SNAPSHOTS.value,
        learning_rate=LEARNING_RATE.value,
        clip=CLIP.value,
        jacobian_examples=JACOBIAN_EXAMPLES.value,
        linear=LINEAR.value,
        num_devices=NUM_DEVICES.value,
        seed=SEED.value,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = config_from_flags()
    if config.loss == "every" and config.task != "random":
        raise app.UsageError("--loss=every needs --task=random (the adding problem has one target, at the end)")
    print(
        f"gradient flow: {', '.join(s.label for s in settings(config))} on {config.task}, T={config.seq_len}",
        flush=True,
    )
    try:
        summary = run(config, WORKDIR.value)
    except (workdir.WorkdirError, ValueError) as e:  # a foreign workdir; --num_devices the batch cannot split over
        raise app.UsageError(str(e).replace("--batch_size", "--batch")) from e
    out = Path(WORKDIR.value)
    print(
        f"wrote {out / 'gradient_flow.png'}, {out / 'gradient_norms.csv'}, {out / 'summary.json'} "
        f"({summary['wall_time_s']:.1f} s)"
    )
    if config.linear:
        print(f"closed form a^(T-t): max relative error {summary['closed_form_max_rel_error']}")


if __name__ == "__main__":
    sys.exit(app.run(main))
