"""Part-of-speech tagging (many-to-many) on UD English-EWT: a BiLSTM tagger with character features.

The data is ``en_ewt-ud-{train,dev,test}.conllu`` of ``--data`` (``seqjax.data.conllu``: 12,544 / 2,001 /
2,077 sentences, 204,577 / 25,147 / 25,094 words); the tags are UPOS (17). The model is
``seqjax.models.tagger``: lower-cased word embeddings (vocabulary from train, ``min_count``) and a
character CNN of the original form, ``num_layers`` bidirectional recurrent layers, a linear layer per token.

Training: ``epochs`` epochs of full batches of ``batch_size`` sentences (shuffled per epoch from ``seed``,
bucketed by length), the mean cross-entropy over the batch's tokens, ``optimizer`` at a constant
``learning_rate``, the gradient clipped to a global norm of ``clip`` (0: none). The batch of step k and
its dropout key are functions of k alone, so rerunning the same command resumes exactly. After every
epoch (and after the last step) dev and test token accuracy (UPOS, every word counted once) are
measured; the model with the best dev accuracy so far is kept in ``best/``; the test accuracy reported
for it is the one measured at that epoch, never used for selection.

A run's ``--workdir`` holds ``flags.json``, ``vocab.json`` (words), ``chars.json``, ``tags.json``,
``checkpoints/``, ``best/checkpoints/``, ``metrics.jsonl`` and ``tensorboard/`` (training steps),
``eval/metrics.jsonl`` and ``eval/tensorboard/`` (dev and test after each epoch) and ``results.json``,
laid out as ``seqjax.experiments.sentiment``'s.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import train, workdir
from seqjax.data import conllu as data_lib
from seqjax.data.sentiment import epoch_batches
from seqjax.data.text import DataError
from seqjax.experiments import dev_selection
from seqjax.experiments.sentiment import RESULTS_JSON, VOCAB_JSON
from seqjax.models import tagger

EXPERIMENT = "tagging"
CHARS_JSON = "chars.json"
TAGS_JSON = "tags.json"


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on; the model's part becomes ``tagger.TaggerConfig``."""

    data: str = "../shared/data/ud_english_ewt"
    prefix: str = "en_ewt-ud"
    cell: str = "lstm"
    num_layers: int = 2
    embed: int = 100
    char_embed: int = 30
    char_features: int = 50
    char_window: int = 3
    max_word_len: int = 20
    hidden: int = 128
    bidirectional: bool = True
    dropout: float = 0.33
    embed_scale: float = 0.1
    min_count: int = 2
    batch_size: int = 32
    bucket: bool = True
    bucket_pool: int = 50
    pad_multiple: int = 16
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    clip: float = 5.0  # global-norm clipping threshold; 0: none
    epochs: int = 5
    max_steps: int = 0  # > 0: stop after this many updates (a quick run); 0: all epochs
    eval_batch_size: int = 256
    log_every: int = 100
    checkpoint_every: int = 1000
    seed: int = 0


# Flags a checkpoint in the workdir depends on: a rerun may change only the others (epochs, max_steps, logging).
FIXED_FLAGS = (
    "data", "prefix", "cell", "num_layers", "embed", "char_embed", "char_features", "char_window", "max_word_len",
    "hidden", "bidirectional", "dropout", "embed_scale", "min_count", "batch_size", "bucket", "bucket_pool",
    "optimizer", "learning_rate", "clip", "seed",
)  # fmt: skip


def load_data(config: Config) -> data_lib.TaggingData:
    """The three splits of ``config.data``, checked (``DataError`` naming the file and line)."""
    return data_lib.load_conllu(config.data, config.min_count, config.max_word_len, config.prefix)


def check(config: Config, data: data_lib.TaggingData) -> None:
    """``DataError`` if ``data`` cannot serve ``config`` (call it before claiming the workdir)."""
    if len(data.train) < config.batch_size:
        raise DataError(
            f"{config.data}: {len(data.train)} training sentences, fewer than --batch_size={config.batch_size}"
        )


def model_config(config: Config, vocabs: data_lib.Vocabularies) -> tagger.TaggerConfig:
    return tagger.TaggerConfig(
        vocab_size=len(vocabs.words),
        char_vocab_size=len(vocabs.chars),
        num_tags=len(vocabs.tags),
        cell=config.cell,
        num_layers=config.num_layers,
        hidden_size=config.hidden,
        embed_size=config.embed,
        char_embed_size=config.char_embed,
        char_features=config.char_features,
        char_window=config.char_window,
        bidirectional=config.bidirectional,
        dropout=config.dropout,
        embed_scale=config.embed_scale,
    )


@functools.cache
def _training(model: tagger.TaggerConfig, optimizer: str, learning_rate: float, clip: float) -> train.Training:
    schedule = train.schedule("constant", learning_rate)
    clipping = train.Clipping("global_norm", clip) if clip > 0 else train.Clipping()
    return train.make_training(
        tagger.batch_loss(model), train.optimizer(optimizer, schedule), clipping, learning_rate=schedule
    )


def make_training(config: Config, model: tagger.TaggerConfig) -> train.Training:
    """The training step of a run (cached: runs in one process share its compilation)."""
    return _training(model, config.optimizer, config.learning_rate, config.clip)


def initial_state(config: Config, model: tagger.TaggerConfig, training: train.Training) -> train.TrainState:
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    return training.init(tagger.init_params(model, init_key), train_key)


def evaluate(model: tagger.TaggerConfig, params, data: data_lib.Encoded, config: Config) -> dict[str, float]:
    """``{"accuracy", "loss"}`` over every token of ``data`` (loss: mean cross-entropy in nats), no dropout."""
    correct, nll = 0, 0.0
    for indices, words, chars, lengths, tags in data_lib.eval_batches(
        data, config.eval_batch_size, config.pad_multiple
    ):
        logits = tagger.predict(model, params, jnp.asarray(words), jnp.asarray(chars), jnp.asarray(lengths))
        logits = np.asarray(logits, np.float64)[: len(indices)]
        tags, lengths = tags[: len(indices)], lengths[: len(indices)]
        mask = np.arange(tags.shape[1])[None, :] < lengths[:, None]  # [b', t]
        log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        correct += int(np.sum((np.argmax(logits, axis=-1) == tags) & mask))
        nll -= float(np.sum(np.take_along_axis(log_probs, tags[..., None], axis=-1)[..., 0][mask]))
    return {"accuracy": correct / data.num_tokens, "loss": nll / data.num_tokens}


def run(config: Config, out: Path, data: data_lib.TaggingData | None = None) -> dict[str, Any]:
    """Trains (or resumes) and evaluates into the claimed workdir ``out``; returns and writes ``results.json``."""
    data = data or load_data(config)
    check(config, data)
    for name, vocab in (
        (VOCAB_JSON, data.vocabs.words),
        (CHARS_JSON, data.vocabs.chars),
        (TAGS_JSON, data.vocabs.tags),
    ):
        vocab.save(out / name)
    model = model_config(config, data.vocabs)
    steps_per_epoch = len(data.train) // config.batch_size
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    training = make_training(config, model)
    state = initial_state(config, model, training)

    def batch(k: int):
        epoch, index = divmod(k, steps_per_epoch)
        order = epoch_batches(
            data.train.lengths, config.batch_size, config.seed, epoch, config.bucket, config.bucket_pool
        )
        return tuple(jnp.asarray(a) for a in data_lib.take(data.train, order[index], config.pad_multiple))

    def evaluate_splits(params) -> dict[str, float]:
        dev, test = (evaluate(model, params, split, config) for split in (data.dev, data.test))
        return {
            "dev_accuracy": dev["accuracy"],
            "dev_loss": dev["loss"],
            "test_accuracy": test["accuracy"],
            "test_loss": test["loss"],
        }

    def describe(entry: dict[str, float]) -> str:
        return (
            f"dev UPOS accuracy {entry['dev_accuracy']:.4f} (loss {entry['dev_loss']:.4f}), "
            f"test {entry['test_accuracy']:.4f}"
        )

    state, history, best = dev_selection.fit_selecting_best(
        training,
        state,
        batch,
        total_steps,
        steps_per_epoch,
        out,
        evaluate_splits,
        "dev_accuracy",
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        describe=describe,
    )
    steps = int(state.step)
    results: dict[str, Any] = {
        "steps": steps,
        "epochs": steps / steps_per_epoch,
        "steps_per_epoch": steps_per_epoch,
        "sentences_per_step": config.batch_size,
        "parameters": sum(int(leaf.size) for leaf in jax.tree.leaves(state.params)),
        "vocab_size": len(data.vocabs.words),
        "chars": len(data.vocabs.chars),
        "tags": list(data.vocabs.tags.tokens),
        "sentences": {name: len(getattr(data, name)) for name in data_lib.SPLITS},
        "tokens": {name: getattr(data, name).num_tokens for name in data_lib.SPLITS},
        "dev_accuracy": [h["dev_accuracy"] for h in history],
        "test_accuracy": [h["test_accuracy"] for h in history],
        "best": {name: best[name] for name in ("step", "epoch", "dev_accuracy", "test_accuracy")},
        "final": {name: history[-1][name] for name in ("step", "epoch", "dev_accuracy", "test_accuracy")},
        "history": history,
        "train_s": history[-1]["train_s"],
        "train_sentences_per_s": steps * config.batch_size / max(history[-1]["train_s"], 1e-9),
    }
    workdir.write_json(out / RESULTS_JSON, results)
    print(
        f"best dev UPOS accuracy {best['dev_accuracy']:.4f} (epoch {best['epoch']:.2f}); "
        f"test accuracy at that epoch {best['test_accuracy']:.4f}",
        flush=True,
    )
    return results
