r"""Captioning images of handwritten digits: a CNN encoder, a recurrent decoder (see seqjax.experiments.captioning).

    python experiments/captioning.py --workdir=runs/captions_lstm
    python experiments/captioning.py --cell=gru --workdir=runs/captions_gru
    python experiments/captioning.py --min_digits=1 --digits_per_image=4 --workdir=runs/captions_1to4

Dev exact-caption and per-word accuracy after every epoch (eval/metrics.jsonl, TensorBoard), the best-dev
model in best/, the test accuracies of that model and a figure of decoded test captions (test_captions.png)
in results.json. Rerunning a command resumes from the workdir's last checkpoint.
"""

import sys

from absl import app, flags

from seqjax import train
from seqjax.experiments import captioning, config_flags, entry, flag_checks
from seqjax.experiments.captioning import Config

HELP = {
    "cell": "Cell: rnn, lstm, gru, ... or 'module:attr' for your own.",
    "digits_per_image": "Digits per image (the most, with --min_digits): images are 8 x 8k pixels.",
    "min_digits": "The fewest digits per image (0: always --digits_per_image).",
    "train_size": "Composed training images.",
    "dev_size": "Composed dev images (model selection).",
    "test_size": "Composed test images.",
    "dev_fraction": "Share of each digit's source images kept for dev images.",
    "test_fraction": "Share of each digit's source images kept for test images.",
    "conv1": "Filters of the first convolution.",
    "conv2": "Filters of the second convolution.",
    "image_features": "Size of the image vector that sets the decoder's initial state.",
    "embed": "Word embedding size.",
    "hidden": "Hidden size of the decoder cell.",
    "embed_scale": "Embeddings start N(0, embed_scale^2).",
    "batch_size": "Images per update.",
    "optimizer": f"Optimizer: {', '.join(train.OPTIMIZERS)}.",
    "learning_rate": "The (constant) learning rate.",
    "clip": "Global-norm gradient clipping threshold (0: none).",
    "epochs": "Training epochs.",
    "max_steps": "Stop after this many updates (0: all epochs).",
    "eval_batch_size": "Images per batch when decoding (speed only).",
    "figure_examples": "Test images shown in test_captions.png (0: no figure).",
    "log_every": "Metrics every this many steps.",
    "checkpoint_every": "Checkpoint every this many steps.",
    **config_flags.DEVICE_HELP,
    "seed": "Random seed (source pools, composed images, initialisation, batch order).",
}
POSITIVE = {"digits_per_image", "train_size", "dev_size", "test_size", "conv1", "conv2", "image_features", "embed",
            "hidden", "batch_size", "epochs", "eval_batch_size", "log_every", "checkpoint_every"}  # fmt: skip

WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
config_flags.define_flags(Config, HELP, POSITIVE)
flags.register_validator("optimizer", lambda v: v in train.OPTIMIZERS, "--optimizer: unknown optimizer")
flags.register_validator("embed_scale", lambda v: v > 0, "--embed_scale must be positive")
flags.register_validator("learning_rate", lambda v: v > 0, "--learning_rate must be positive")
flags.register_validator("cell", lambda name: flag_checks.known_cells([name]))
flags.register_multi_flags_validator(
    ["min_digits", "digits_per_image"],
    lambda v: v["min_digits"] <= v["digits_per_image"],
    "--min_digits must be at most --digits_per_image",
)


main = entry.model_selecting_main(
    captioning, WORKDIR, "results.json, test_captions.png, eval/metrics.jsonl and checkpoints"
)


if __name__ == "__main__":
    sys.exit(app.run(main))
