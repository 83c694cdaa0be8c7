"""Sentence-level sentiment (many-to-one) on SST-2: a recurrent classifier trained from scratch.

The data is ``{train,dev,test}.tsv`` of ``--data`` (``seqjax.data.sentiment``: GLUE's phrase-level
training set, the 872 dev sentences, the 1,821 labelled test sentences); the vocabulary comes from
train (``min_count``). The model is ``seqjax.models.classifier``: embedding, ``num_layers`` recurrent
layers (optionally bidirectional), ``last``/``mean``/``max`` pooling, dropout, a linear layer.

Training: ``epochs`` epochs of full batches of ``batch_size`` (shuffled per epoch from ``seed``, bucketed
by length when ``bucket``), the mean cross-entropy, ``optimizer`` at a constant ``learning_rate``, the
gradient clipped to a global norm of ``clip`` (0: none). The batch of step k and its dropout key are
functions of k alone, so rerunning the same command resumes from the last checkpoint exactly. After
every epoch (and after the last step) dev and test are evaluated; the model with the best dev
accuracy so far is kept in ``best/`` (model selection by dev accuracy; the test accuracy reported for
it is the one measured at that epoch, never used for selection).

A run's ``--workdir`` holds ``flags.json``, ``vocab.json``, ``checkpoints/`` (the latest states, to resume),
``best/checkpoints/`` (the best-dev state), ``metrics.jsonl`` and ``tensorboard/`` (training steps),
``eval/metrics.jsonl`` and ``eval/tensorboard/`` (dev and test after each epoch) and ``results.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import train, workdir
from seqjax.data import sentiment as data_lib
from seqjax.data.text import DataError, Vocab
from seqjax.experiments import dev_selection
from seqjax.models import classifier

EXPERIMENT = "sentiment"
VOCAB_JSON = "vocab.json"
RESULTS_JSON = "results.json"


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on; the model's part becomes ``classifier.ClassifierConfig``."""

    data: str = "../shared/data/sst2"
    cell: str = "lstm"
    num_layers: int = 1
    embed: int = 300
    hidden: int = 150
    bidirectional: bool = False
    pooling: str = "last"
    dropout: float = 0.5
    embed_dropout: float = 0.0
    embed_scale: float = 1.0
    min_count: int = 2
    max_len: int = 64
    batch_size: int = 64
    bucket: bool = True
    bucket_pool: int = 50
    pad_multiple: int = 8
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    clip: float = 5.0  # global-norm clipping threshold; 0: none
    epochs: int = 4
    max_steps: int = 0  # > 0: stop after this many updates (a quick run); 0: all epochs
    eval_batch_size: int = 256
    log_every: int = 100
    checkpoint_every: int = 1000
    seed: int = 0


# Flags a checkpoint in the workdir depends on: a rerun may change only the others (epochs, max_steps, logging).
FIXED_FLAGS = (
    "data", "cell", "num_layers", "embed", "hidden", "bidirectional", "pooling", "dropout", "embed_dropout",
    "embed_scale", "min_count", "max_len", "batch_size", "bucket", "bucket_pool", "optimizer", "learning_rate",
    "clip", "seed",
)  # fmt: skip


def load_data(config: Config) -> data_lib.SentimentData:
    """The three splits of ``config.data``, checked (``DataError`` naming the file and line)."""
    return data_lib.load_sst2(config.data, config.min_count, config.max_len)


def check(config: Config, data: data_lib.SentimentData) -> None:
    """``DataError`` if ``data`` cannot serve ``config`` (call it before claiming the workdir)."""
    if len(data.train) < config.batch_size:
        raise DataError(
            f"{config.data}: {len(data.train)} training examples, fewer than --batch_size={config.batch_size}"
        )


def model_config(config: Config, vocab_size: int) -> classifier.ClassifierConfig:
    return classifier.ClassifierConfig(
        vocab_size=vocab_size,
        cell=config.cell,
        num_layers=config.num_layers,
        hidden_size=config.hidden,
        embed_size=config.embed,
        bidirectional=config.bidirectional,
        pooling=config.pooling,
        dropout=config.dropout,
        embed_dropout=config.embed_dropout,
        embed_scale=config.embed_scale,
    )


def make_training(config: Config, model: classifier.ClassifierConfig) -> train.Training:
    """The training step of a run (cached: runs in one process, e.g. a resumed one, share its compilation)."""
    return _training(model, config.optimizer, config.learning_rate, config.clip)


@functools.cache
def _training(model: classifier.ClassifierConfig, optimizer: str, learning_rate: float, clip: float) -> train.Training:
    schedule = train.schedule("constant", learning_rate)
    clipping = train.Clipping("global_norm", clip) if clip > 0 else train.Clipping()
    return train.make_training(
        classifier.batch_loss(model), train.optimizer(optimizer, schedule), clipping, learning_rate=schedule
    )


def initial_state(config: Config, model: classifier.ClassifierConfig, training: train.Training) -> train.TrainState:
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    return training.init(classifier.init_params(model, init_key), train_key)


def evaluate(model: classifier.ClassifierConfig, params, data: data_lib.Encoded, config: Config) -> dict[str, float]:
    """``{"accuracy", "loss"}`` (loss: mean cross-entropy in nats) over every example of ``data``, no dropout."""
    correct, nll = 0, 0.0
    for indices, tokens, lengths, labels in data_lib.eval_batches(data, config.eval_batch_size, config.pad_multiple):
        logits = np.asarray(classifier.predict(model, params, jnp.asarray(tokens), jnp.asarray(lengths)), np.float64)
        logits, labels = logits[: len(indices)], labels[: len(indices)]
        log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        correct += int(np.sum(np.argmax(logits, axis=1) == labels))
        nll -= float(np.sum(log_probs[np.arange(len(labels)), labels]))
    return {"accuracy": correct / len(data), "loss": nll / len(data)}


def run(config: Config, out: Path, data: data_lib.SentimentData | None = None) -> dict[str, Any]:
    """Trains (or resumes) and evaluates into the claimed workdir ``out``; returns and writes ``results.json``."""
    data = data or load_data(config)
    check(config, data)
    data.vocab.save(out / VOCAB_JSON)
    model = model_config(config, len(data.vocab))
    steps_per_epoch = len(data.train) // config.batch_size
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    training = make_training(config, model)
    state = initial_state(config, model, training)

    def batch(k: int):
        epoch, index = divmod(k, steps_per_epoch)
        order = data_lib.epoch_batches(
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
            f"dev accuracy {entry['dev_accuracy']:.4f} (loss {entry['dev_loss']:.4f}), "
            f"test accuracy {entry['test_accuracy']:.4f}"
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
        "examples_per_step": config.batch_size,
        "parameters": sum(int(leaf.size) for leaf in jax.tree.leaves(state.params)),
        "vocab_size": len(data.vocab),
        "examples": {"train": len(data.train), "dev": len(data.dev), "test": len(data.test)},
        "dev_accuracy": [h["dev_accuracy"] for h in history],
        "test_accuracy": [h["test_accuracy"] for h in history],
        "best": {name: best[name] for name in ("step", "epoch", "dev_accuracy", "test_accuracy")},
        "final": {name: history[-1][name] for name in ("step", "epoch", "dev_accuracy", "test_accuracy")},
        "history": history,
        "train_s": history[-1]["train_s"],
        "train_examples_per_s": steps * config.batch_size / max(history[-1]["train_s"], 1e-9),
    }
    workdir.write_json(out / RESULTS_JSON, results)
    print(
        f"best dev accuracy {best['dev_accuracy']:.4f} (epoch {best['epoch']:.2f}); "
        f"test accuracy at that epoch {best['test_accuracy']:.4f}",
        flush=True,
    )
    return results


def load_trained(run_dir: str | Path) -> tuple[classifier.ClassifierConfig, Vocab, Any, int]:
    """``(model, vocabulary, params, step)`` of a run's best-dev checkpoint, for predictions."""
    run_dir = Path(run_dir)
    marker = run_dir / workdir.MARKER
    if not marker.is_file():
        raise FileNotFoundError(f"{run_dir}: no {workdir.MARKER} (expected an experiments/sentiment.py workdir)")
    description = json.loads(marker.read_text())
    if description.get("experiment") != EXPERIMENT:
        raise ValueError(f"{run_dir} holds a {description.get('experiment')!r} run, not a {EXPERIMENT} run")
    config = Config(**description["flags"])
    vocab = data_lib.check_vocab(Vocab.load(run_dir / VOCAB_JSON), str(run_dir / VOCAB_JSON))
    model = model_config(config, len(vocab))
    training = make_training(config, model)
    state = dev_selection.restore_best(run_dir, initial_state(config, model, training))
    return model, vocab, state.params, int(state.step)
