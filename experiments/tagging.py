r"""POS tagging on UD English-EWT or chunking on CoNLL-2000 with a BiLSTM tagger (see seqjax.experiments.tagging).

    python experiments/tagging.py --workdir=runs/ewt_bilstm
    python experiments/tagging.py --cell=gru --workdir=runs/ewt_bigru
    python experiments/tagging.py --char_features=0 --workdir=runs/ewt_no_chars
    python experiments/tagging.py --dataset=conll2000 --data=../shared/data/conll2000 --workdir=runs/conll2000_bilstm

Dev and test UPOS accuracy (chunking: chunk F1 and token accuracy) after every epoch (eval/metrics.jsonl,
TensorBoard), the best-dev model in best/, results.json with the per-epoch scores and the test score of
the best-dev epoch. Rerunning a command resumes from the workdir's last checkpoint.
"""

import sys

from absl import app, flags

from seqjax import train
from seqjax.experiments import config_flags, entry, flag_checks, tagging
from seqjax.experiments.tagging import DATASETS, Config

HELP = {
    "dataset": "ud: POS tagging (UPOS) of CoNLL-U files; conll2000: chunking (IOB2) of CoNLL-2000 files.",
    "data": "ud: directory of {prefix}-train.conllu, -dev.conllu, -test.conllu; conll2000: of train.txt, test.txt.",
    "prefix": "ud: file name prefix of the CoNLL-U files.",
    "dev_fraction": "conll2000: the last this fraction of train.txt's sentences is the dev split.",
    "pos_feature": "conll2000: feed the files' POS tags (an embedding) to the tagger.",
    "pos_embed": "Size of the POS tag embedding (with --pos_feature).",
    "encoder": "rnn: layers of --cell; transformer: self-attention blocks of width --hidden (no --bidirectional).",
    "cell": "Cell: rnn, lstm, gru, ... or 'module:attr' for your own.",
    "num_heads": "Attention heads of --encoder=transformer (--hidden must be divisible by it).",
    "mlp_ratio": "--encoder=transformer: the feed-forward size is mlp_ratio * --hidden.",
    "num_layers": "Stacked recurrent layers.",
    "embed": "Word embedding size (lower-cased words).",
    "char_embed": "Character embedding size.",
    "char_features": "Filters of the character CNN (0: no character feature).",
    "char_window": "Character CNN window (odd).",
    "max_word_len": "Characters read per word (longer words: their first and last characters).",
    "hidden": "Hidden size of every layer (per direction).",
    "bidirectional": "Read each layer's input in both directions.",
    "dropout": "Dropout on the word vectors, between layers and before the output layer.",
    "embed_scale": "Embeddings start N(0, embed_scale^2).",
    "min_count": "Training words seen fewer times become <unk>.",
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
POSITIVE = {"num_layers", "embed", "char_embed", "char_window", "max_word_len", "hidden", "min_count", "batch_size",
            "pos_embed", "bucket_pool", "pad_multiple", "epochs", "eval_batch_size", "log_every",
            "checkpoint_every",
            "num_heads", "mlp_ratio"}  # fmt: skip

WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
config_flags.define_flags(Config, HELP, POSITIVE)
flags.register_validator("dataset", lambda v: v in DATASETS, f"--dataset must be one of {', '.join(DATASETS)}")
flags.register_validator("dev_fraction", lambda v: 0 < v < 1, "--dev_fraction must be in (0, 1)")
flags.register_validator("optimizer", lambda v: v in train.OPTIMIZERS, "--optimizer: unknown optimizer")
flags.register_validator("dropout", lambda v: 0 <= v < 1, "--dropout must be in [0, 1)")
flags.register_validator("char_window", lambda v: v % 2 == 1, "--char_window must be odd")
flags.register_validator("embed_scale", lambda v: v > 0, "--embed_scale must be positive")
flags.register_validator("learning_rate", lambda v: v > 0, "--learning_rate must be positive")
flag_checks.register_token_encoder_validators()


main = entry.model_selecting_main(tagging, WORKDIR, "results.json, eval/metrics.jsonl and checkpoints")


if __name__ == "__main__":
    sys.exit(app.run(main))
