r"""Recurrent (truncated BPTT) or causal Transformer language models (see seqjax.experiments.language_model).

    python experiments/language_model.py --preset=zaremba_small --workdir=runs/ptb_small
    python experiments/language_model.py --preset=char_rnn --workdir=runs/shakespeare
    python experiments/language_model.py --preset=char_rnn --cell=gru --workdir=runs/shakespeare_gru
    python experiments/language_model.py --preset=char_rnn --model=transformer --num_layers=2 --hidden=128 \
        --num_heads=4 --mlp_ratio=2 --workdir=runs/shakespeare_transformer

--model=transformer reads --num_layers blocks of width --hidden with --num_heads heads and a
feed-forward of --mlp_ratio * --hidden, with a context of --bptt tokens and no state across windows.
--compute_dtype=bfloat16 trains in mixed precision (seqjax.precision): bfloat16 matrix products over float32
parameters, recurrent state and loss; for GPUs and TPUs (XLA:CPU emulates bfloat16 products, slowly).

A preset sets the published recipe; any flag given explicitly overrides it. Rerunning a command
resumes from the workdir's last checkpoint. Writes results.json (valid/test perplexity or bits per
character, training time, tokens/s, parameter count), eval.jsonl (every epoch), metrics.jsonl, and what
experiments/sample.py needs.
"""

import dataclasses
import sys

from absl import app, flags

from seqjax import train, workdir
from seqjax.checkpoints import CheckpointMismatch
from seqjax.data.corpus import load_corpus
from seqjax.data.text import FORMATS, DataError
from seqjax.experiments import config_flags, distributed_flags, entry, flag_checks
from seqjax.experiments.language_model import MODELS, PRESETS, Config, fixed_flags, run
from seqjax.models.lm import CELL_INITS

HELP = {
    "corpus": f"Corpus format: {', '.join(FORMATS)}.",
    "data": "PTB directory (ptb_words, ptb_chars) or text file (chars).",
    "valid_fraction": "chars: the last fraction of the text is the validation split.",
    "model": "rnn (a recurrent cell, --cell) or transformer (decoder-only, causal).",
    "cell": "Cell: rnn, lstm, gru, ... or 'module:attr' for your own (--model=rnn).",
    "num_layers": "Stacked recurrent layers, or Transformer blocks.",
    "hidden": "Hidden size of every layer (the Transformer's d_model).",
    "embed": "Embedding size; 0 means the hidden size.",
    "dropout": "Dropout probability on non-recurrent connections (1 - Zaremba's keep-prob).",
    "tie_weights": "Output weights = embedding transposed.",
    "num_heads": "--model=transformer: attention heads (must divide --hidden).",
    "mlp_ratio": "--model=transformer: feed-forward size = mlp_ratio * hidden.",
    "init_scale": "Parameters start uniform in [-init_scale, init_scale].",
    "cell_init": f"Cell parameters: {' or '.join(CELL_INITS)} (the cells' own initialisers).",
    "bptt": "Truncated-BPTT window (time steps per update).",
    "batch_size": "Parallel streams.",
    "optimizer": f"Optimizer: {', '.join(train.OPTIMIZERS)}.",
    "learning_rate": "Initial learning rate.",
    "clipping": f"Gradient clipping: {', '.join(train.CLIPPING)}.",
    "clip": "Clipping threshold.",
    "epochs": "Training epochs.",
    "decay_epoch": "The learning rate decays from the end of this epoch on.",
    "lr_decay": "Learning-rate factor per epoch once decaying.",
    "max_steps": "Stop after this many updates (0: all epochs).",
    "eval_batch_size": "Parallel streams when evaluating (1: the whole split as one stream).",
    "eval_bptt": "Window length when evaluating (the carry flows through, so only speed depends on it).",
    "eval_stride": "--model=transformer: evaluation windows of --bptt tokens start every this many (0: --bptt).",
    "log_every": "Metrics every this many steps.",
    "checkpoint_every": "Checkpoint every this many steps.",
    **config_flags.DEVICE_HELP,
    "seed": "Random seed.",
}
POSITIVE = {"num_layers", "hidden", "bptt", "batch_size", "epochs", "decay_epoch", "eval_batch_size", "eval_bptt",
            "log_every", "checkpoint_every", "num_heads", "mlp_ratio"}  # fmt: skip

PRESET = flags.DEFINE_enum("preset", None, list(PRESETS), "A published recipe; explicit flags override it.")
WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
config_flags.define_flags(Config, HELP, POSITIVE)
flags.register_validator("model", lambda v: v in MODELS, f"--model must be one of {', '.join(MODELS)}")
flags.register_validator("corpus", lambda v: v in FORMATS, f"--corpus must be one of {', '.join(FORMATS)}")
flags.register_validator("cell_init", lambda v: v in CELL_INITS, f"--cell_init must be {' or '.join(CELL_INITS)}")
flags.register_validator("optimizer", lambda v: v in train.OPTIMIZERS, "--optimizer: unknown optimizer")
flags.register_validator("clipping", lambda v: v in train.CLIPPING, "--clipping must be none, global_norm or value")
flags.register_validator("dropout", lambda v: 0 <= v < 1, "--dropout must be in [0, 1)")
flags.register_validator("cell", lambda name: flag_checks.known_cells([name]))


def config_from_flags() -> Config:
    """Config defaults, then the preset, then every flag given on the command line."""
    values = dict(PRESETS[PRESET.value]) if PRESET.value else {}
    for field in dataclasses.fields(Config):
        if flags.FLAGS[field.name].present:
            values[field.name] = flags.FLAGS[field.name].value
    return Config(**values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    entry.quiet_orbax()
    config = config_from_flags()
    distributed_flags.start(config.num_devices, config.batch_size)
    if config.model == "transformer":
        if config.hidden % config.num_heads:
            raise app.UsageError(f"--hidden={config.hidden} is not divisible by --num_heads={config.num_heads}")
        if config.eval_stride > config.bptt:
            raise app.UsageError(f"--eval_stride={config.eval_stride} must be at most --bptt={config.bptt}")
    try:
        corpus = load_corpus(config.corpus, config.data, config.valid_fraction)  # bad data: nothing written
        out = workdir.claim(WORKDIR.value, "language_model", dataclasses.asdict(config), fixed=fixed_flags(config))
        run(config, out, corpus)
    except (workdir.WorkdirError, CheckpointMismatch, DataError) as e:  # bad input the flags could not see
        raise app.UsageError(str(e)) from e
    print(f"wrote results.json, eval.jsonl and checkpoints into {WORKDIR.value}")


if __name__ == "__main__":
    sys.exit(app.run(main))
