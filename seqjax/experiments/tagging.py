"""Tagging (many-to-many): POS tagging on UD English-EWT or chunking on CoNLL-2000, a BiLSTM tagger.

``dataset="ud"`` (the default): ``en_ewt-ud-{train,dev,test}.conllu`` of ``--data`` (``seqjax.data.conllu``:
12,544 / 2,001 / 2,077 sentences, 204,577 / 25,147 / 25,094 words); the tags are UPOS (17), scored by
token accuracy. ``dataset="conll2000"``: ``train.txt`` and ``test.txt`` of ``--data``
(``seqjax.data.conll2000``; dev = the last ``dev_fraction`` of train: 8,042 / 894 / 2,012 sentences,
190,717 / 21,010 / 47,377 words); the tags are IOB2 chunk tags (23), scored by chunk F1
(``seqjax.chunk_f1``, conlleval's rules: exact type and boundaries) and token accuracy; with
``pos_feature`` the file's (Brill tagger) POS tags are an input (an embedding of ``pos_embed``). The model
is ``seqjax.models.tagger``: lower-cased word embeddings (vocabulary from train, ``min_count``) and a
character CNN of the original form, ``num_layers`` bidirectional recurrent layers, a linear layer per
token; the predicted tag of a token is the arg-max of its logits (no CRF, no constraint on I- after O:
such a tag opens a chunk, as in conlleval).

Training: ``epochs`` epochs of full batches of ``batch_size`` sentences (shuffled per epoch from ``seed``,
bucketed by length), the mean cross-entropy over the batch's tokens, ``optimizer`` at a constant
``learning_rate``, the gradient clipped to a global norm of ``clip`` (0: none). The batch of step k and
its dropout key are functions of k alone, so rerunning the same command resumes exactly. After every
epoch (and after the last step) dev and test token accuracy (every word counted once) and, for chunking,
chunk precision, recall and F1 are measured; the model with the best dev accuracy (UD) or dev F1
(chunking) so far is kept in ``best/``; the test score reported for it is the one measured at that
epoch, never used for selection. For chunking, ``results.json`` also holds the best model's per-type
chunk scores on dev and test.

A run's ``--workdir`` holds ``flags.json``, ``vocab.json`` (words), ``chars.json``, ``tags.json``,
``pos.json`` (chunking with ``pos_feature``), ``checkpoints/``, ``best/checkpoints/``, ``metrics.jsonl`` and
``tensorboard/`` (training steps),
``eval/metrics.jsonl`` and ``eval/tensorboard/`` (dev and test after each epoch) and ``results.json``,
laid out as ``seqjax.experiments.sentiment``'s.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import chunk_f1, train, workdir
from seqjax.data import conll2000
from seqjax.data import conllu as data_lib
from seqjax.data.sentiment import epoch_batches
from seqjax.data.text import DataError, Vocab
from seqjax.experiments import dev_selection
from seqjax.experiments.sentiment import RESULTS_JSON, VOCAB_JSON
from seqjax.models import tagger

EXPERIMENT = "tagging"
CHARS_JSON = "chars.json"
TAGS_JSON = "tags.json"
POS_JSON = "pos.json"
DATASETS = ("ud", "conll2000")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on; the model's part becomes ``tagger.TaggerConfig``."""

    dataset: str = "ud"  # one of DATASETS
    data: str = "../shared/data/ud_english_ewt"
    prefix: str = "en_ewt-ud"  # ud only
    dev_fraction: float = 0.1  # conll2000 only: the last this fraction of train is dev
    pos_feature: bool = True  # conll2000 only: read the given POS tags
    pos_embed: int = 25
    encoder: str = "rnn"  # rnn (the cell) or transformer
    cell: str = "lstm"
    num_heads: int = 4  # transformer
    mlp_ratio: int = 4  # transformer
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
    num_devices: int = 0  # split every batch over this many devices (data parallel); 0: all visible
    shard_params_over: int = 0  # with several devices: split parameters of at least this many elements; 0: none
    compute_dtype: str = "float32"  # "bfloat16": mixed precision (seqjax.precision)
    seed: int = 0


# Flags a checkpoint in the workdir depends on: a rerun may change only the others (epochs, max_steps, logging).
FIXED_FLAGS = (
    "dataset", "data", "prefix", "dev_fraction", "pos_feature", "pos_embed", "cell", "num_layers", "embed",
    "char_embed", "char_features", "char_window", "max_word_len",
    "hidden", "bidirectional", "dropout", "embed_scale", "min_count", "batch_size", "bucket", "bucket_pool",
    "optimizer", "learning_rate", "clip", "seed",
    "encoder", "num_heads", "mlp_ratio",
)  # fmt: skip


Data = data_lib.TaggingData | conll2000.ChunkingData


def load_data(config: Config) -> Data:
    """The three splits of ``config.data``, checked (``DataError`` naming the file and line)."""
    if config.dataset == "conll2000":
        return conll2000.load_conll2000(config.data, config.min_count, config.max_word_len, config.dev_fraction)
    if config.dataset != "ud":
        raise ValueError(f"dataset must be one of {DATASETS}, got {config.dataset!r}")
    return data_lib.load_conllu(config.data, config.min_count, config.max_word_len, config.prefix)


def chunking(config: Config) -> bool:
    return config.dataset == "conll2000"


def reads_pos(config: Config) -> bool:
    """Whether the tagger reads given POS tags (chunking with ``pos_feature``)."""
    return chunking(config) and config.pos_feature


def take(config: Config, split: data_lib.Encoded, indices: np.ndarray) -> tuple[np.ndarray, ...]:
    """The model's batch ``(words, chars, lengths, tags[, pos])`` of the sentences ``indices``."""
    if not chunking(config):
        return data_lib.take(split, indices, config.pad_multiple)
    return conll2000.take(split, indices, config.pad_multiple)[: 5 if reads_pos(config) else 4]


def eval_batches(config: Config, split: data_lib.Encoded):
    """``(indices, words, chars, lengths, tags[, pos])`` covering ``split`` (``seqjax.data.conllu.eval_batches``)."""
    if not chunking(config):
        yield from data_lib.eval_batches(split, config.eval_batch_size, config.pad_multiple)
        return
    for indices, *batch in conll2000.eval_batches(split, config.eval_batch_size, config.pad_multiple):
        yield (indices, *batch[: 5 if reads_pos(config) else 4])


def check(config: Config, data: Data) -> None:
    """``DataError`` if ``data`` cannot serve ``config`` (call it before claiming the workdir)."""
    if len(data.train) < config.batch_size:
        raise DataError(
            f"{config.data}: {len(data.train)} training sentences, fewer than --batch_size={config.batch_size}"
        )


def model_config(config: Config, vocabs: data_lib.Vocabularies, pos: Vocab | None = None) -> tagger.TaggerConfig:
    """The tagger of ``config``; ``pos``: the given tags' vocabulary, when ``reads_pos(config)``."""
    return tagger.TaggerConfig(
        vocab_size=len(vocabs.words),
        char_vocab_size=len(vocabs.chars),
        num_tags=len(vocabs.tags),
        cell=config.cell,
        encoder=config.encoder,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        num_layers=config.num_layers,
        hidden_size=config.hidden,
        embed_size=config.embed,
        char_embed_size=config.char_embed,
        char_features=config.char_features,
        char_window=config.char_window,
        bidirectional=config.bidirectional and config.encoder == "rnn",  # self-attention reads both ways
        dropout=config.dropout,
        embed_scale=config.embed_scale,
        pos_vocab_size=len(pos) if pos is not None and reads_pos(config) else 0,
        pos_embed_size=config.pos_embed,
    )


def make_training(config: Config, model: tagger.TaggerConfig) -> train.Training:
    """The training step of a run (cached: runs in one process share its compilation)."""
    return dev_selection.constant_rate_training(
        tagger.batch_loss, model, config.optimizer, config.learning_rate, config.clip, config.compute_dtype
    )


def initial_state(config: Config, model: tagger.TaggerConfig, training: train.Training) -> train.TrainState:
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    return training.init(tagger.init_params(model, init_key), train_key)


def evaluate(
    model: tagger.TaggerConfig, params, data: data_lib.Encoded, config: Config, tag_names: Vocab | None = None
) -> dict[str, Any]:
    """``{"accuracy", "loss"}`` over every token of ``data`` (loss: mean cross-entropy in nats), no dropout.

    With ``tag_names`` (chunking: the IOB2 tag vocabulary) also the chunk scores of the arg-max tags,
    ``"precision"``, ``"recall"``, ``"f1"`` and ``"per_type"`` (``{type: seqjax.chunk_f1.Counts.scores()}``).
    """
    correct, nll = 0, 0.0
    predicted = np.zeros_like(data.tags)  # [n, L]
    for indices, words, chars, lengths, tags, *pos in eval_batches(config, data):
        inputs = (jnp.asarray(a) for a in (words, chars, lengths, *pos))
        logits = np.asarray(tagger.predict(model, params, *inputs), np.float64)[: len(indices)]
        tags, lengths = tags[: len(indices)], lengths[: len(indices)]
        mask = np.arange(tags.shape[1])[None, :] < lengths[:, None]  # [b', t]
        log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        best = np.argmax(logits, axis=-1)
        correct += int(np.sum((best == tags) & mask))
        nll -= float(np.sum(np.take_along_axis(log_probs, tags[..., None], axis=-1)[..., 0][mask]))
        stored = min(best.shape[1], predicted.shape[1])
        predicted[indices, :stored] = best[:, :stored]
    metrics: dict[str, Any] = {"accuracy": correct / data.num_tokens, "loss": nll / data.num_tokens}
    if tag_names is not None:
        names = np.asarray(tag_names.tokens)

        def sentences(ids):
            return (names[row[:n]].tolist() for row, n in zip(ids, data.lengths, strict=True))

        scores = chunk_f1.score(sentences(data.tags), sentences(predicted))
        metrics.update(scores.overall.scores())
        for name in ("correct", "predicted", "gold"):
            del metrics[name]
        metrics["per_type"] = {kind: counts.scores() for kind, counts in scores.per_type.items()}
    return metrics


def run(config: Config, out: Path, data: Data | None = None) -> dict[str, Any]:
    """Trains (or resumes) and evaluates into the claimed workdir ``out``; returns and writes ``results.json``."""
    data = data or load_data(config)
    check(config, data)
    vocabs = [(VOCAB_JSON, data.vocabs.words), (CHARS_JSON, data.vocabs.chars), (TAGS_JSON, data.vocabs.tags)]
    pos = data.pos if reads_pos(config) else None
    if pos is not None:
        vocabs.append((POS_JSON, pos))
    for name, vocab in vocabs:
        vocab.save(out / name)
    model = model_config(config, data.vocabs, pos)
    steps_per_epoch = len(data.train) // config.batch_size
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    training = make_training(config, model)
    state = initial_state(config, model, training)
    tag_names = data.vocabs.tags if chunking(config) else None
    scores = ("f1", "precision", "recall", "accuracy", "loss") if chunking(config) else ("accuracy", "loss")
    select = "dev_f1" if chunking(config) else "dev_accuracy"
    reported = (
        ("dev_f1", "test_f1", "dev_accuracy", "test_accuracy")
        if chunking(config)
        else ("dev_accuracy", "test_accuracy")
    )

    def batch(k: int):
        epoch, index = divmod(k, steps_per_epoch)
        order = epoch_batches(
            data.train.lengths, config.batch_size, config.seed, epoch, config.bucket, config.bucket_pool
        )
        return tuple(jnp.asarray(a) for a in take(config, data.train, order[index]))

    def evaluate_splits(params) -> dict[str, float]:
        dev, test = (evaluate(model, params, split, config, tag_names) for split in (data.dev, data.test))
        return {f"{name}_{score}": split[score] for name, split in (("dev", dev), ("test", test)) for score in scores}

    def describe(entry: dict[str, float]) -> str:
        if chunking(config):
            return (
                f"dev chunk F1 {entry['dev_f1']:.4f} (accuracy {entry['dev_accuracy']:.4f}, "
                f"loss {entry['dev_loss']:.4f}), test F1 {entry['test_f1']:.4f} (accuracy {entry['test_accuracy']:.4f})"
            )
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
        select,
        describe=describe,
        **dev_selection.run_options(config),
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
        **{name: [h[name] for h in history] for name in reported},
        "best": {name: best[name] for name in ("step", "epoch", *reported)},
        "final": {name: history[-1][name] for name in ("step", "epoch", *reported)},
        "history": history,
        "train_s": history[-1]["train_s"],
        "train_sentences_per_s": steps * config.batch_size / max(history[-1]["train_s"], 1e-9),
    }
    if chunking(config):
        results["dataset"] = config.dataset
        results["pos_tags"] = len(data.pos) if pos is not None else 0
        best_params = dev_selection.restore_best(out, state).params  # the per-type scores of the selected model
        for name, split in (("dev", data.dev), ("test", data.test)):
            scores_by_type = evaluate(model, best_params, split, config, tag_names)
            results["best"][f"{name}_per_type"] = scores_by_type["per_type"]
    workdir.write_json(out / RESULTS_JSON, results)
    if chunking(config):
        print(
            f"best dev chunk F1 {best['dev_f1']:.4f} (epoch {best['epoch']:.2f}); test F1 at that epoch "
            f"{best['test_f1']:.4f} (token accuracy {best['test_accuracy']:.4f})",
            flush=True,
        )
        return results
    print(
        f"best dev UPOS accuracy {best['dev_accuracy']:.4f} (epoch {best['epoch']:.2f}); "
        f"test accuracy at that epoch {best['test_accuracy']:.4f}",
        flush=True,
    )
    return results
