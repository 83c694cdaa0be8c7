r"""Language-model baselines: Kneser-Ney n-grams and Bengio et al.'s NNLM (see seqjax.experiments.lm_baselines).

    python experiments/lm_baselines.py --model=kn --order=5 --workdir=runs/ptb_kn5
    python experiments/lm_baselines.py --model=nnlm --workdir=runs/ptb_nnlm
    python experiments/lm_baselines.py --model=nnlm --direct --workdir=runs/ptb_nnlm_direct

Valid and test are each scored as one stream, every token predicted, through lm_metrics.summary.
Rerunning an NNLM command resumes from the workdir's last checkpoint. Writes results.json (valid/test
perplexity, time), and for the NNLM eval.jsonl (every epoch), metrics.jsonl and checkpoints.
"""

import dataclasses
import sys

from absl import app, flags

from seqjax import train, workdir
from seqjax.checkpoints import CheckpointMismatch
from seqjax.data.corpus import load_corpus
from seqjax.data.text import FORMATS, DataError
from seqjax.experiments import config_flags, distributed_flags, entry
from seqjax.experiments.lm_baselines import FIXED_FLAGS, MODELS, Config, check, run

HELP = {
    "corpus": f"Corpus format: {', '.join(FORMATS)}.",
    "data": "PTB directory (ptb_words, ptb_chars) or text file (chars).",
    "order": "kn: the n-gram order.",
    "context": "nnlm: n - 1, the previous tokens the model sees.",
    "embed": "nnlm: embedding size per token (m).",
    "hidden": "nnlm: tanh hidden layer size (h).",
    "direct": "nnlm: Bengio's direct connections from the embeddings to the output.",
    "dropout": "nnlm: dropout probability on the embeddings and the hidden layer.",
    "batch_size": "nnlm: training positions per update.",
    "epochs": "nnlm: training epochs.",
    "optimizer": f"nnlm: {', '.join(train.OPTIMIZERS)}.",
    "learning_rate": "nnlm: the (constant) learning rate.",
    "clip": "nnlm: global-norm gradient clipping threshold (0: none).",
    "max_steps": "nnlm: stop after this many updates (0: all epochs).",
    "eval_batch_size": "nnlm: predictions per batch when evaluating (speed only).",
    "log_every": "nnlm: metrics every this many steps.",
    "checkpoint_every": "nnlm: checkpoint every this many steps.",
    **config_flags.DEVICE_HELP,
    "seed": "nnlm: random seed (initialisation, batch order, dropout).",
}
POSITIVE = {"order", "context", "embed", "hidden", "batch_size", "epochs", "eval_batch_size", "log_every",
            "checkpoint_every"}  # fmt: skip

MODEL = flags.DEFINE_enum("model", None, list(MODELS), "kn: Kneser-Ney n-grams; nnlm: Bengio et al. 2003.")
WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
flags.mark_flag_as_required("model")
config_flags.define_flags(Config, HELP, POSITIVE, skip=("model",))
flags.register_validator("corpus", lambda v: v in FORMATS, f"--corpus must be one of {', '.join(FORMATS)}")
flags.register_validator("optimizer", lambda v: v in train.OPTIMIZERS, "--optimizer: unknown optimizer")
flags.register_validator("dropout", lambda v: 0 <= v < 1, "--dropout must be in [0, 1)")
flags.register_validator("learning_rate", lambda v: v > 0, "--learning_rate must be positive")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    entry.quiet_orbax()
    config = config_flags.config_from_flags(Config)
    distributed_flags.start(config.num_devices, config.batch_size)
    try:
        corpus = load_corpus(config.corpus, config.data)  # bad data: nothing written
        check(config, corpus)
        out = workdir.claim(WORKDIR.value, "lm_baselines", dataclasses.asdict(config), fixed=FIXED_FLAGS[config.model])
        run(config, out, corpus)
    except (workdir.WorkdirError, CheckpointMismatch, DataError) as e:  # bad input the flags could not see
        raise app.UsageError(str(e)) from e
    print(f"wrote results.json into {WORKDIR.value}")


if __name__ == "__main__":
    sys.exit(app.run(main))
