"""Image captioning (one-to-many) on composed handwritten digits: a CNN encoder, a recurrent decoder.

The data is ``seqjax.data.digit_captions``: scikit-learn's 1,797 bundled 8 x 8 digits split into disjoint
train/dev/test pools, then ``digits_per_image`` of them (``min_digits..digits_per_image`` when ``min_digits`` is
set) side by side per image, captioned by their names ("three one four <eos>"), all made from ``seed``. The
model is ``seqjax.models.captioner``: a Flax CNN's image vector sets the initial carry of any seqjax cell,
which writes the caption word by word (teacher forcing in training, greedy decoding in evaluation).

Training: ``epochs`` epochs of full batches of ``batch_size`` (shuffled per epoch from ``seed``), the mean
cross-entropy over the caption tokens, ``optimizer`` at a constant ``learning_rate``, the gradient clipped to a
global norm of ``clip`` (0: none). The batch of step k is a function of k alone, so rerunning the same
command resumes from the last checkpoint exactly. After every epoch (and after the last step) the dev set is
decoded greedily; the state with the best dev exact-caption accuracy is kept in ``best/``
(``seqjax.experiments.dev_selection``). The test set is decoded once, after training, from that state.

Metrics (``caption_metrics``): exact-caption accuracy, the fraction of images whose decoded caption, ``<eos>``
included, is the true one; per-word accuracy, the fraction of the true captions' digit words that the decoded
caption has at the same position.

A run's ``--workdir`` holds ``flags.json``, ``vocab.json``, ``checkpoints/``, ``best/checkpoints/``,
``metrics.jsonl`` and ``tensorboard/`` (training steps), ``eval/metrics.jsonl`` (dev after each epoch),
``test_captions.png`` (test images with their decoded captions) and ``results.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import train, workdir
from seqjax.data import digit_captions as data_lib
from seqjax.data.text import DataError
from seqjax.experiments import dev_selection
from seqjax.models import captioner

EXPERIMENT = "captioning"
VOCAB_JSON = "vocab.json"
RESULTS_JSON = "results.json"
FIGURE = "test_captions.png"


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on; the model's part becomes ``captioner.CaptionerConfig``."""

    cell: str = "lstm"
    digits_per_image: int = 3
    min_digits: int = 0  # 0: every image holds digits_per_image digits; else min_digits..digits_per_image
    train_size: int = 20000
    dev_size: int = 1000
    test_size: int = 2000
    dev_fraction: float = 0.1
    test_fraction: float = 0.2
    conv1: int = 16
    conv2: int = 32
    image_features: int = 128
    embed: int = 32
    hidden: int = 128
    embed_scale: float = 0.1
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    clip: float = 5.0  # global-norm clipping threshold; 0: none
    epochs: int = 10
    max_steps: int = 0  # > 0: stop after this many updates (a quick run); 0: all epochs
    eval_batch_size: int = 500
    figure_examples: int = 12
    log_every: int = 100
    checkpoint_every: int = 1000
    num_devices: int = 0  # split every batch over this many devices (data parallel); 0: all visible
    shard_params_over: int = 0  # with several devices: split parameters of at least this many elements; 0: none
    compute_dtype: str = "float32"  # "bfloat16": mixed precision (seqjax.precision)
    seed: int = 0


# Flags a checkpoint or the selection in the workdir depends on: a rerun may change only the others.
FIXED_FLAGS = (
    "cell", "digits_per_image", "min_digits", "train_size", "dev_size", "test_size", "dev_fraction", "test_fraction",
    "conv1", "conv2", "image_features", "embed", "hidden", "embed_scale", "batch_size", "optimizer", "learning_rate",
    "clip", "seed",
)  # fmt: skip


def load_data(config: Config) -> data_lib.CaptionData:
    """The three composed splits (``DataError`` with a one-line message naming the flag if they cannot be made)."""
    return data_lib.make_data(
        config.seed,
        config.train_size,
        config.dev_size,
        config.test_size,
        config.digits_per_image,
        config.min_digits,
        config.dev_fraction,
        config.test_fraction,
    )


def check(config: Config, data: data_lib.CaptionData) -> None:
    """``DataError`` if ``data`` cannot serve ``config`` (call it before claiming the workdir)."""
    if len(data.train) < config.batch_size:
        raise DataError(f"--train_size={len(data.train)} is smaller than --batch_size={config.batch_size}")
    width = data.train.images.shape[2]
    if width != data_lib.DIGIT_SIZE * config.digits_per_image:
        raise DataError(f"images are {width} pixels wide, not 8 x --digits_per_image={config.digits_per_image}")


def model_config(config: Config) -> captioner.CaptionerConfig:
    return captioner.CaptionerConfig(
        vocab_size=len(data_lib.VOCAB),
        image_height=data_lib.DIGIT_SIZE,
        image_width=data_lib.DIGIT_SIZE * config.digits_per_image,
        cell=config.cell,
        hidden_size=config.hidden,
        embed_size=config.embed,
        conv_features=(config.conv1, config.conv2),
        image_features=config.image_features,
        embed_scale=config.embed_scale,
        bos_id=data_lib.BOS,
        eos_id=data_lib.EOS,
    )


def make_training(config: Config, model: captioner.CaptionerConfig) -> train.Training:
    """The training step of a run (cached: runs in one process, e.g. a resumed one, share its compilation)."""
    return dev_selection.constant_rate_training(
        captioner.batch_loss, model, config.optimizer, config.learning_rate, config.clip, config.compute_dtype
    )


def initial_state(config: Config, model: captioner.CaptionerConfig, training: train.Training) -> train.TrainState:
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    return _jitted_init(training)(captioner.init_params(model, init_key), train_key)


@functools.cache
def _jitted_init(training: train.Training):
    """``training.init`` jitted: one compilation instead of one per optimizer-state leaf."""
    return jax.jit(training.init)


def caption_metrics(
    tokens: np.ndarray, lengths: np.ndarray, captions: np.ndarray, caption_lengths: np.ndarray
) -> dict[str, float]:
    """Exact-caption and per-word accuracy of decoded captions against the true ones.

    Args:
      tokens: ``[n, l]`` decoded word ids; only the first ``lengths`` count.
      lengths: ``[n]`` decoded lengths, counting ``<eos>`` (``l`` when none was decoded).
      captions: ``[n, t]`` true word ids, the digits' names then ``<eos>``.
      caption_lengths: ``[n]`` true lengths, counting ``<eos>``.

    Returns:
      ``{"exact": mean_i [lengths_i = caption_lengths_i and tokens_i = captions_i up to it],
      "word_accuracy": sum_i #{j < caption_lengths_i - 1: j < lengths_i and tokens_ij = captions_ij}
      / sum_i (caption_lengths_i - 1)}``.
    """
    tokens, lengths = np.asarray(tokens), np.asarray(lengths)
    captions, caption_lengths = np.asarray(captions), np.asarray(caption_lengths)
    steps = captions.shape[1]
    aligned = np.full(captions.shape, -1, np.int64)  # decoded tokens on the true captions' positions
    width = min(steps, tokens.shape[1])
    aligned[:, :width] = tokens[:, :width]
    positions = np.arange(steps)[None, :]
    decoded = positions < lengths[:, None]
    same = (aligned == captions) & decoded
    real = positions < caption_lengths[:, None]
    exact = (lengths == caption_lengths) & np.all(same | ~real, axis=1)
    words = positions < caption_lengths[:, None] - 1
    return {
        "exact": float(np.mean(exact)),
        "word_accuracy": float(np.sum(same & words) / max(int(np.sum(words)), 1)),
    }


def decode_split(
    model: captioner.CaptionerConfig, params, split: data_lib.CaptionSplit, batch_size: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Greedy ``(tokens [n, t], lengths [n])`` of every image of ``split`` and its teacher-forced mean
    cross-entropy (nats per token). Batches of ``batch_size`` (the last padded with blank images): one compilation."""
    max_len = split.captions.shape[1]
    size = min(batch_size, len(split))
    tokens, lengths, nll, count = [], [], 0.0, 0
    for start in range(0, len(split), size):
        stop = min(start + size, len(split))
        pad = size - (stop - start)
        images, captions, caption_lengths = (
            np.concatenate([a[start:stop], np.repeat(a[:1], pad, axis=0)]) for a in split[:3]
        )
        decoded = captioner.decode(model, params, jnp.asarray(images), max_len)
        tokens.append(np.asarray(decoded.tokens)[: stop - start])
        lengths.append(np.asarray(decoded.lengths)[: stop - start])
        logits = captioner.predict(model, params, *(jnp.asarray(a) for a in (images, captions, caption_lengths)))
        logits = np.asarray(logits, np.float64)[: stop - start]
        log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        picked = np.take_along_axis(log_probs, split.captions[start:stop, :, None], axis=-1)[..., 0]
        real = np.arange(max_len)[None, :] < split.lengths[start:stop, None]
        nll -= float(np.sum(picked[real]))
        count += int(np.sum(real))
    return np.concatenate(tokens), np.concatenate(lengths), nll / count


def evaluate(model: captioner.CaptionerConfig, params, split: data_lib.CaptionSplit, config: Config):
    """``{"exact", "word_accuracy", "loss"}`` of greedy captions of every image of ``split`` (``caption_metrics``)."""
    tokens, lengths, nll = decode_split(model, params, split, config.eval_batch_size)
    return {**caption_metrics(tokens, lengths, split.captions, split.lengths), "loss": nll}, tokens, lengths


def caption_figure(images: np.ndarray, predicted: list[str], truth: list[str], path: Path) -> None:
    """A PNG of ``images [n, H, W]``, each titled with its decoded caption (green: exact, red: not, with the truth)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(4, len(images))
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 1.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, guess, true in zip(axes.flat, images, predicted, truth, strict=False):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        right = guess == true
        ax.set_title(guess if right else f"{guess}\n(truth: {true})", fontsize=8, color="green" if right else "red")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    workdir.write_atomic(path, buffer.getvalue())


def _text(ids: np.ndarray) -> str:
    return " ".join(data_lib.caption_words(ids))


def run(config: Config, out: Path, data: data_lib.CaptionData | None = None) -> dict[str, Any]:
    """Trains (or resumes) and evaluates into the claimed workdir ``out``; returns and writes ``results.json``."""
    data = data or load_data(config)
    check(config, data)
    data_lib.VOCAB.save(out / VOCAB_JSON)
    model = model_config(config)
    steps_per_epoch = len(data.train) // config.batch_size
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    training = make_training(config, model)
    state = initial_state(config, model, training)

    def batch(k: int):
        epoch, index = divmod(k, steps_per_epoch)
        order = np.random.default_rng([config.seed, 2, epoch]).permutation(len(data.train))
        rows = order[index * config.batch_size : (index + 1) * config.batch_size]
        return tuple(jnp.asarray(a[rows]) for a in data.train[:3])

    def evaluate_dev(params) -> dict[str, float]:
        metrics, _, _ = evaluate(model, params, data.dev, config)
        return {f"dev_{name}": value for name, value in metrics.items()}

    def describe(entry: dict[str, float]) -> str:
        return (
            f"dev exact-caption accuracy {entry['dev_exact']:.4f}, per-word {entry['dev_word_accuracy']:.4f} "
            f"(loss {entry['dev_loss']:.4f})"
        )

    state, history, best = dev_selection.fit_selecting_best(
        training,
        state,
        batch,
        total_steps,
        steps_per_epoch,
        out,
        evaluate_dev,
        "dev_exact",
        describe=describe,
        **dev_selection.run_options(config),
    )
    steps = int(state.step)
    best_state = dev_selection.restore_best(out, initial_state(config, model, training))
    test, tokens, _ = evaluate(model, best_state.params, data.test, config)
    shown = min(config.figure_examples, len(data.test))
    predicted = [_text(tokens[i]) for i in range(len(data.test))]
    truth = [_text(data.test.captions[i]) for i in range(len(data.test))]
    if shown:
        caption_figure(data.test.images[:shown], predicted[:shown], truth[:shown], out / FIGURE)
    results: dict[str, Any] = {
        "steps": steps,
        "epochs": steps / steps_per_epoch,
        "steps_per_epoch": steps_per_epoch,
        "examples_per_step": config.batch_size,
        "parameters": sum(int(leaf.size) for leaf in jax.tree.leaves(state.params)),
        "examples": {name: len(getattr(data, name)) for name in data_lib.SPLITS},
        "source_digits": {name: len(pool) for name, pool in data.pools.items()},
        "dev_exact": [h["dev_exact"] for h in history],
        "dev_word_accuracy": [h["dev_word_accuracy"] for h in history],
        "best": {name: best[name] for name in ("step", "epoch", "dev_exact", "dev_word_accuracy", "dev_loss")},
        "test": {"step": int(best_state.step), **test},
        "final": {name: history[-1][name] for name in ("step", "epoch", "dev_exact", "dev_word_accuracy")},
        "history": history,
        "test_examples": [{"decoded": p, "truth": t} for p, t in zip(predicted[:shown], truth[:shown], strict=True)],
        "train_s": history[-1]["train_s"],
        "train_examples_per_s": steps * config.batch_size / max(history[-1]["train_s"], 1e-9),
    }
    workdir.write_json(out / RESULTS_JSON, results)
    print(
        f"best dev exact-caption accuracy {best['dev_exact']:.4f} (epoch {best['epoch']:.2f}); from that state, "
        f"test exact-caption accuracy {test['exact']:.4f}, per-word accuracy {test['word_accuracy']:.4f}",
        flush=True,
    )
    return results
