"""Sentence-level sentiment (many-to-one) on SST-2 or MR: a recurrent classifier, from scratch or word2vec vectors.

``dataset="sst2"``: ``{train,dev,test}.tsv`` of ``--data`` (``seqjax.data.sentiment``: GLUE's phrase-level
training set, the 872 dev sentences, the 1,821 labelled test sentences). ``dataset="mr"``: Movie Review
polarity, ``rt-polarity.{pos,neg}`` of ``--data``, fold ``fold`` of ``folds`` as test, 10% of the other
sentences as dev and the rest train (fixed folds: ``seqjax.data.sentiment.fold_indices``); ``fold=-1`` runs
every fold in turn into ``<workdir>/fold_<k>/`` (``run_folds``) and reports the mean and standard deviation of
their test accuracies. The vocabulary comes from train (``min_count``). The model is
``seqjax.models.classifier``: embedding, ``num_layers`` recurrent layers (optionally bidirectional),
``last``/``mean``/``max`` pooling, dropout, a linear layer. With ``init_embeddings`` (a word2vec file,
``seqjax.data.word2vec_format``: binary if its name ends in ``.bin``, else text), the embedding rows of the
vocabulary's words found in the file start as their vectors (``initialise_embedding``), the others random.

Training: ``epochs`` epochs of full batches of ``batch_size`` (shuffled per epoch from ``seed``, bucketed
by length when ``bucket``), the mean cross-entropy, ``optimizer`` at a constant ``learning_rate``, the
gradient clipped to a global norm of ``clip`` (0: none). The batch of step k and its dropout key are
functions of k alone, so rerunning the same command resumes from the last checkpoint exactly. After
every epoch (and after the last step) dev and test are evaluated; the model with the best dev
accuracy so far is kept in ``best/`` (model selection by dev accuracy; the test accuracy reported for
it is the one measured at that epoch, never used for selection).

A run's ``--workdir`` holds ``flags.json``, ``vocab.json``, ``checkpoints/`` (the latest states, to resume),
``best/checkpoints/`` (the best-dev state), ``metrics.jsonl`` and ``tensorboard/`` (training steps),
``eval/metrics.jsonl`` and ``eval/tensorboard/`` (dev and test after each epoch) and ``results.json`` (with
``init_embeddings``: ``init_embeddings_found``, how many vocabulary words had a vector). With MR's ``fold=-1`` it
holds ``fold_<k>/``, one such workdir per fold, and a ``results.json`` over the folds.
"""

from __future__ import annotations

import dataclasses
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
from seqjax.models.word_vectors import WordVectors, load_word2vec

EXPERIMENT = "sentiment"
VOCAB_JSON = "vocab.json"
RESULTS_JSON = "results.json"


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on; the model's part becomes ``classifier.ClassifierConfig``."""

    data: str = "../shared/data/sst2"
    dataset: str = "sst2"  # sst2 or mr
    folds: int = 10  # mr: the cross-validation's folds
    fold: int = 0  # mr: the test fold, 0-based; -1: all of them in turn (run_folds)
    encoder: str = "rnn"  # rnn (the cell) or transformer
    cell: str = "lstm"
    num_heads: int = 4  # transformer
    mlp_ratio: int = 4  # transformer
    num_layers: int = 1
    embed: int = 300
    hidden: int = 150
    bidirectional: bool = False
    pooling: str = "last"
    dropout: float = 0.5
    embed_dropout: float = 0.0
    embed_scale: float = 1.0
    init_embeddings: str = ""  # a word2vec file (text, or binary if *.bin) of dimension embed; "": none
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
    num_devices: int = 0  # split every batch over this many devices (data parallel); 0: all visible
    shard_params_over: int = 0  # with several devices: split parameters of at least this many elements; 0: none
    compute_dtype: str = "float32"  # "bfloat16": mixed precision (seqjax.precision)
    seed: int = 0


# Flags a checkpoint in the workdir depends on: a rerun may change only the others (epochs, max_steps, logging).
FIXED_FLAGS = (
    "data", "cell", "num_layers", "embed", "hidden", "bidirectional", "pooling", "dropout", "embed_dropout",
    "embed_scale", "min_count", "max_len", "batch_size", "bucket", "bucket_pool", "optimizer", "learning_rate",
    "clip", "seed", "dataset", "folds", "fold", "init_embeddings",
    "encoder", "num_heads", "mlp_ratio",
)  # fmt: skip
DATASETS = ("sst2", "mr")
DEFAULT_DATA = {"sst2": "../shared/data/sst2", "mr": "../shared/data/mr"}
ALL_FOLDS = -1


def claim_workdir(directory: str | Path, config: Config) -> Path:
    """``workdir.claim`` of ``directory`` for ``config`` with the ``FIXED_FLAGS`` (a record that predates one
    of them ran with its default)."""
    return workdir.claim(
        directory, EXPERIMENT, dataclasses.asdict(config), fixed=FIXED_FLAGS, defaults=dataclasses.asdict(Config())
    )


def load_data(config: Config) -> data_lib.SentimentData:
    """The three splits of ``config.data`` (MR: fold ``config.fold``'s), checked (``DataError`` naming file, line)."""
    if config.dataset == "sst2":
        return data_lib.load_sst2(config.data, config.min_count, config.max_len)
    if config.dataset == "mr":
        return data_lib.load_mr(config.data, config.folds, config.fold, config.min_count, config.max_len)
    raise ValueError(f"unknown dataset {config.dataset!r}; known: {', '.join(DATASETS)}")


def load_init_vectors(config: Config) -> WordVectors | None:
    """The vectors of ``config.init_embeddings`` (None if it is empty); ``DataError`` naming the flag and the file."""
    if not config.init_embeddings:
        return None
    path = Path(config.init_embeddings)
    try:
        vectors = load_word2vec(path, binary=path.suffix == ".bin")
    except DataError as e:
        raise DataError(f"--init_embeddings: {e}") from None
    if vectors.dim != config.embed:
        raise DataError(
            f"--init_embeddings={path}: the file's vectors have {vectors.dim} dimensions, --embed={config.embed}; "
            "they must be equal"
        )
    return vectors


def initialise_embedding(embedding: jax.Array, vocab: Vocab, vectors: WordVectors) -> tuple[jax.Array, int]:
    """``embedding`` with the rows of the vocabulary's words found in ``vectors`` replaced by their vectors.

    Row ``i`` becomes ``vectors[vocab.tokens[i]]`` where that word is in ``vectors`` (exact match), except for
    ``<pad>`` and ``<unk>`` (this vocabulary's own tokens); every other row is kept.

    Args:
      embedding: ``[V, e]``, the model's initial embedding.
      vocab: V tokens, ``<pad>`` and ``<unk>`` first.
      vectors: word vectors of dimension e.

    Returns:
      ``([V, e]`` of ``embedding``'s dtype, the number of rows replaced).
    """
    if embedding.shape != (len(vocab), vectors.dim):
        raise ValueError(f"embedding {embedding.shape} does not fit {len(vocab)} tokens of {vectors.dim} dimensions")
    rows = [(i, token) for i, token in enumerate(vocab.tokens) if token not in (data_lib.PAD, data_lib.UNK)]
    found = [(i, vectors.index(token)) for i, token in rows if token in vectors]
    embedding = jnp.asarray(embedding)
    if not found:
        return embedding, 0
    target, source = (np.asarray(column) for column in zip(*found, strict=True))
    return embedding.at[target].set(jnp.asarray(vectors.vectors[source], embedding.dtype)), len(found)


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
        encoder=config.encoder,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        num_layers=config.num_layers,
        hidden_size=config.hidden,
        embed_size=config.embed,
        bidirectional=config.bidirectional and config.encoder == "rnn",  # self-attention reads both ways
        pooling=config.pooling,
        dropout=config.dropout,
        embed_dropout=config.embed_dropout,
        embed_scale=config.embed_scale,
    )


def make_training(config: Config, model: classifier.ClassifierConfig) -> train.Training:
    """The training step of a run (cached: runs in one process, e.g. a resumed one, share its compilation)."""
    return dev_selection.constant_rate_training(
        classifier.batch_loss, model, config.optimizer, config.learning_rate, config.clip, config.compute_dtype
    )


def initial_state(
    config: Config, model: classifier.ClassifierConfig, training: train.Training, params: Any = None
) -> train.TrainState:
    """The state before step 0: ``params`` if given (``initial_params``), else the model's random ones."""
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    return training.init(classifier.init_params(model, init_key) if params is None else params, train_key)


def initial_params(
    config: Config, model: classifier.ClassifierConfig, vocab: Vocab, vectors: WordVectors | None
) -> tuple[Any, int | None]:
    """``(params, found)``: the random initial parameters, with ``vectors``' rows in the embedding if given
    (``initialise_embedding``; ``found``: how many rows, None without vectors)."""
    params = classifier.init_params(model, jax.random.split(jax.random.key(config.seed))[0])
    if vectors is None:
        return params, None
    embedding, found = initialise_embedding(params["embedding"], vocab, vectors)
    return {**params, "embedding": embedding}, found


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


def run(
    config: Config, out: Path, data: data_lib.SentimentData | None = None, vectors: WordVectors | None = None
) -> dict[str, Any]:
    """Trains (or resumes) and evaluates into the claimed workdir ``out``; returns and writes ``results.json``.

    ``data`` and ``vectors``: ``load_data(config)`` and ``load_init_vectors(config)``, loaded here if not given.
    """
    if config.fold == ALL_FOLDS:
        raise ValueError("fold=-1 (every fold) is run_folds, not run")
    data = data or load_data(config)
    check(config, data)
    if vectors is None:
        vectors = load_init_vectors(config)
    data.vocab.save(out / VOCAB_JSON)
    model = model_config(config, len(data.vocab))
    steps_per_epoch = len(data.train) // config.batch_size
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    training = make_training(config, model)
    params, found = initial_params(config, model, data.vocab, vectors)
    state = initial_state(config, model, training, params)
    if found is not None:
        print(f"--init_embeddings: {found} of {len(data.vocab) - 2} vocabulary words found in {config.init_embeddings}")

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
        describe=describe,
        **dev_selection.run_options(config),
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
        "dataset": config.dataset,
    }
    if config.dataset == "mr":
        results.update(fold=config.fold, folds=config.folds)
    if found is not None:
        results["init_embeddings_found"] = found
    workdir.write_json(out / RESULTS_JSON, results)
    print(
        f"best dev accuracy {best['dev_accuracy']:.4f} (epoch {best['epoch']:.2f}); "
        f"test accuracy at that epoch {best['test_accuracy']:.4f}",
        flush=True,
    )
    return results


def run_folds(config: Config, out: Path, vectors: WordVectors | None = None) -> dict[str, Any]:
    """MR's every fold in turn, each a ``run`` in its own workdir ``out/fold_<k>`` (resumable alike); returns and
    writes ``out/results.json``: each fold's best-dev epoch's dev and test accuracy, and the mean and (sample,
    ddof=1) standard deviation of the test accuracies."""
    if config.dataset != "mr":
        raise ValueError(f"folds are MR's; dataset={config.dataset!r}")
    vectors = vectors if vectors is not None else load_init_vectors(config)
    dev, test = [], []
    for k in range(config.folds):
        fold_config = dataclasses.replace(config, fold=k)
        print(f"fold {k} of {config.folds}", flush=True)
        best = run(fold_config, claim_workdir(out / f"fold_{k}", fold_config), vectors=vectors)["best"]
        dev.append(best["dev_accuracy"])
        test.append(best["test_accuracy"])
    results = {
        "folds": config.folds,
        "dev_accuracy": dev,
        "test_accuracy": test,
        "test_accuracy_mean": float(np.mean(test)),
        "test_accuracy_std": float(np.std(test, ddof=1)),
    }
    workdir.write_json(out / RESULTS_JSON, results)
    print(
        f"{config.folds}-fold cross-validation: test accuracy {results['test_accuracy_mean']:.4f} "
        f"+- {results['test_accuracy_std']:.4f} (std over folds)",
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
