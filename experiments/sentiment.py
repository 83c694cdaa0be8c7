r"""Sentiment classification on SST-2 or MR with a recurrent encoder (see seqjax.experiments.sentiment).

    python experiments/sentiment.py --workdir=runs/sst2_lstm
    python experiments/sentiment.py --bidirectional --pooling=max --workdir=runs/sst2_bilstm_max
    python experiments/sentiment.py --cell=gru --workdir=runs/sst2_gru
    python experiments/sentiment.py --dataset=mr --fold=0 --workdir=runs/mr_lstm_fold0
    python experiments/sentiment.py --dataset=mr --fold=-1 --workdir=runs/mr_lstm_cv      # all 10 folds
    python experiments/sentiment.py --init_embeddings=runs/w2v_300/vectors.bin --workdir=runs/sst2_lstm_w2v

Dev and test accuracy after every epoch (eval/metrics.jsonl, TensorBoard), the best-dev model in best/,
results.json with the per-epoch accuracies and the test accuracy of the best-dev epoch. Rerunning a
command resumes from the workdir's last checkpoint.
"""

import dataclasses
import sys

from absl import app, flags

from seqjax import train, workdir
from seqjax.checkpoints import CheckpointMismatch
from seqjax.data.text import DataError
from seqjax.experiments import config_flags, distributed_flags, entry, flag_checks
from seqjax.experiments.sentiment import (
    ALL_FOLDS,
    DATASETS,
    DEFAULT_DATA,
    Config,
    check,
    claim_workdir,
    load_data,
    load_init_vectors,
    run,
    run_folds,
)
from seqjax.models.classifier import POOLINGS

HELP = {
    "data": "Directory of SST-2's train.tsv, dev.tsv, test.tsv (label<TAB>text, one header line), or of MR's "
    f"rt-polarity.pos and .neg (Latin-1); with --dataset=mr its default is {DEFAULT_DATA['mr']}.",
    "dataset": f"{' or '.join(DATASETS)}: SST-2 (its own dev and test) or Movie Review polarity (cross-validation).",
    "folds": "--dataset=mr: the folds of the cross-validation (fixed: the same for every --seed).",
    "fold": "--dataset=mr: the test fold, 0-based (10% of the others are dev); -1: every fold into <workdir>/fold_<k>.",
    "init_embeddings": "A word2vec file (binary if it ends in .bin, else text) of dimension --embed: the vocabulary's "
    "words found in it start from their vectors, the others random.",
    "encoder": "rnn: layers of --cell; transformer: self-attention blocks of width --hidden (no --bidirectional).",
    "cell": "Cell: rnn, lstm, gru, ... or 'module:attr' for your own.",
    "num_heads": "Attention heads of --encoder=transformer (--hidden must be divisible by it).",
    "mlp_ratio": "--encoder=transformer: the feed-forward size is mlp_ratio * --hidden.",
    "num_layers": "Stacked recurrent layers.",
    "embed": "Embedding size.",
    "hidden": "Hidden size of every layer (per direction).",
    "bidirectional": "Read each layer's input in both directions.",
    "pooling": f"Sentence vector: {', '.join(POOLINGS)} (last: final state at each sentence's end).",
    "dropout": "Dropout between layers and on the sentence vector.",
    "embed_dropout": "Dropout on the word embeddings.",
    "embed_scale": "Embeddings start N(0, embed_scale^2).",
    "min_count": "Training tokens seen fewer times become <unk>.",
    "max_len": "Sentences keep their first max_len tokens.",
    "batch_size": "Sentences per update.",
    "bucket": "Batch sentences of similar length together (less padding); the batches are still shuffled.",
    "bucket_pool": "With --bucket: sort pools of this many batches by length.",
    "pad_multiple": "Pad each batch to a multiple of this many steps (bounds the compiled shapes).",
    "optimizer": f"Optimizer: {', '.join(train.OPTIMIZERS)}.",
    "learning_rate": "The (constant) learning rate.",
    "clip": "Global-norm gradient clipping threshold (0: none).",
    "epochs": "Training epochs.",
    "max_steps": "Stop after this many updates (0: all epochs).",
    "eval_batch_size": "Sentences per batch when evaluating (speed only).",
    "log_every": "Metrics every this many steps.",
    "checkpoint_every": "Checkpoint every this many steps.",
    **config_flags.DEVICE_HELP,
    "seed": "Random seed (initialisation, batch order, dropout).",
}
POSITIVE = {"num_layers", "embed", "hidden", "min_count", "max_len", "batch_size", "bucket_pool", "pad_multiple",
            "epochs", "eval_batch_size", "log_every", "checkpoint_every",
            "num_heads", "mlp_ratio"}  # fmt: skip

WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
config_flags.define_flags(Config, HELP, POSITIVE, lower_bounds={"folds": 2, "fold": ALL_FOLDS})
flags.register_validator("pooling", lambda v: v in POOLINGS, f"--pooling must be one of {', '.join(POOLINGS)}")
flags.register_validator("optimizer", lambda v: v in train.OPTIMIZERS, "--optimizer: unknown optimizer")
flags.register_validator("dropout", lambda v: 0 <= v < 1, "--dropout must be in [0, 1)")
flags.register_validator("embed_dropout", lambda v: 0 <= v < 1, "--embed_dropout must be in [0, 1)")
flags.register_validator("embed_scale", lambda v: v > 0, "--embed_scale must be positive")
flags.register_validator("learning_rate", lambda v: v > 0, "--learning_rate must be positive")
flag_checks.register_token_encoder_validators()
flags.register_validator("dataset", lambda v: v in DATASETS, f"--dataset must be one of {', '.join(DATASETS)}")
flags.register_multi_flags_validator(
    ["fold", "folds"], lambda f: f["fold"] < f["folds"], "--fold must be below --folds (or -1: every fold)"
)
flags.register_multi_flags_validator(
    ["dataset", "fold", "folds"],
    lambda f: f["dataset"] == "mr" or (f["fold"], f["folds"]) == (Config.fold, Config.folds),
    "--fold and --folds are MR's cross-validation: give --dataset=mr",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    entry.quiet_orbax()
    config = config_flags.config_from_flags(Config)
    if not flags.FLAGS["data"].present:
        config = dataclasses.replace(config, data=DEFAULT_DATA[config.dataset])
    distributed_flags.start(config.num_devices, config.batch_size)
    every_fold = config.fold == ALL_FOLDS
    try:
        data = load_data(dataclasses.replace(config, fold=0) if every_fold else config)  # bad data: nothing written
        check(config, data)
        vectors = load_init_vectors(config)
        out = claim_workdir(WORKDIR.value, config)
        if every_fold:
            run_folds(config, out, vectors)
        else:
            run(config, out, data, vectors)
    except (workdir.WorkdirError, CheckpointMismatch, DataError) as e:  # bad input the flags could not see
        raise app.UsageError(str(e)) from e
    print(f"wrote results.json, eval/metrics.jsonl and checkpoints into {WORKDIR.value}")


if __name__ == "__main__":
    sys.exit(app.run(main))
