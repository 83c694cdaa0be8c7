r"""Translation with an encoder-decoder, with or without attention (see seqjax.experiments.translation).

    python experiments/translation.py --attention=luong --workdir=runs/spa_eng_luong
    python experiments/translation.py --attention=none --workdir=runs/spa_eng_plain
    python experiments/translation.py --attention=bahdanau --bidirectional --cell=gru --workdir=runs/spa_eng_bahdanau
    python experiments/translation.py --dataset=multi30k --max_len=30 --max_pairs=0 --workdir=runs/multi30k

Dev BLEU (greedy, on a fixed dev subset) after every epoch (eval/metrics.jsonl, TensorBoard), the best-dev
model in best/, and from it: test BLEU with greedy decoding and beam search, example translations, attention
heat maps (figures/) and results.json. Rerunning a command resumes from the workdir's last checkpoint.
"""

import sys

from absl import app, flags

from seqjax import train
from seqjax.data.translation import DATASETS, DIRECTIONS
from seqjax.experiments import config_flags, entry, flag_checks, translation
from seqjax.experiments.translation import Config
from seqjax.models.seq2seq import ATTENTIONS

HELP = {
    "dataset": f"Dataset: {', '.join(DATASETS)}.",
    "data": "Directory of the dataset (spa.txt; or Multi30k's train/val/test_2016_flickr.{en,de}); "
    "default ../shared/data/<dataset>.",
    "direction": "source-target: spa-eng or eng-spa (spa_eng), en-de or de-en (multi30k); default the first.",
    "max_len": "Keep the pairs with at most this many tokens a side (multi30k: training pairs only); 0: all.",
    "max_pairs": "Then keep the first this many pairs (multi30k: training pairs only); 0: all.",
    "dev_fraction": "spa_eng: the fraction of distinct source sentences held out for dev.",
    "test_fraction": "spa_eng: the fraction of distinct source sentences held out for test.",
    "min_count": "Training tokens seen fewer times become <unk> (per side).",
    "cell": "Cell: rnn, lstm, gru, ... or 'module:attr' for your own.",
    "attention": f"Attention: {', '.join(ATTENTIONS)}.",
    "bidirectional": "A bidirectional encoder (its final states bridged into the decoder).",
    "num_layers": "Recurrent layers in the encoder and in the decoder.",
    "embed": "Embedding size (both sides).",
    "hidden": "Hidden size of every layer (per direction).",
    "attention_size": "Bahdanau's attention size (0: --hidden).",
    "dropout": "Dropout on the embeddings, between encoder layers and before the output layer.",
    "embed_scale": "Embeddings start N(0, embed_scale^2).",
    "batch_size": "Pairs per update.",
    "bucket": "Batch pairs of similar length together (less padding); the batches are still shuffled.",
    "bucket_pool": "With --bucket: sort pools of this many batches by length.",
    "pad_multiple": "Pad each batch to a multiple of this many steps (bounds the compiled shapes).",
    "optimizer": f"Optimizer: {', '.join(train.OPTIMIZERS)}.",
    "learning_rate": "The (constant) learning rate.",
    "clip": "Global-norm gradient clipping threshold (0: none).",
    "epochs": "Training epochs.",
    "max_steps": "Stop after this many updates (0: all epochs).",
    "decode_len": "The most tokens of a translation, <eos> included (0: the longest training target + 5).",
    "beam_size": "Beams of the beam search of the final test evaluation.",
    "length_penalty": "GNMT length penalty alpha of the beam search (0: none).",
    "dev_subset": "Dev pairs translated after each epoch for model selection (a fixed random subset; 0: all).",
    "eval_batch_size": "Pairs per batch when translating (speed only).",
    "examples": "Test translations shown in results.json.",
    "heatmaps": "Attention heat maps of test sentences written to figures/ (with attention).",
    "log_every": "Metrics every this many steps.",
    "checkpoint_every": "Checkpoint every this many steps.",
    **config_flags.DEVICE_HELP,
    "seed": "Random seed (split, initialisation, batch order, dropout).",
}
POSITIVE = {"num_layers", "embed", "hidden", "batch_size", "bucket_pool", "pad_multiple", "epochs", "beam_size",
            "eval_batch_size", "log_every", "checkpoint_every", "min_count"}  # fmt: skip

WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
config_flags.define_flags(Config, HELP, POSITIVE)
flags.register_validator("dataset", lambda v: v in DATASETS, f"--dataset must be one of {', '.join(DATASETS)}")
flags.register_validator("attention", lambda v: v in ATTENTIONS, f"--attention must be one of {', '.join(ATTENTIONS)}")
flags.register_validator("optimizer", lambda v: v in train.OPTIMIZERS, "--optimizer: unknown optimizer")
flags.register_validator("dropout", lambda v: 0 <= v < 1, "--dropout must be in [0, 1)")
flags.register_validator("embed_scale", lambda v: v > 0, "--embed_scale must be positive")
flags.register_validator("learning_rate", lambda v: v > 0, "--learning_rate must be positive")
flags.register_validator("cell", lambda name: flag_checks.known_cells([name]))
flags.register_multi_flags_validator(
    ["dataset", "direction"],
    lambda f: not f["direction"] or f["direction"] in DIRECTIONS[f["dataset"]],
    "--direction must be one of the dataset's: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in DIRECTIONS.items()),
)
flags.register_multi_flags_validator(
    ["dev_fraction", "test_fraction"],
    lambda f: 0 < f["dev_fraction"] and 0 < f["test_fraction"] and f["dev_fraction"] + f["test_fraction"] < 1,
    "--dev_fraction and --test_fraction must be positive with a sum below 1",
)


main = entry.model_selecting_main(translation, WORKDIR, "results.json, eval/metrics.jsonl, figures/ and checkpoints")


if __name__ == "__main__":
    sys.exit(app.run(main))
