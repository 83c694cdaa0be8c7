r"""Sentence-level sentiment (many-to-one) on SST-2 or MR: a recurrent (or self-attention) classifier.

    python experiments/sentiment.py --workdir=runs/sst2_lstm
    python experiments/sentiment.py --bidirectional --pooling=max --workdir=runs/sst2_bilstm_max
    python experiments/sentiment.py --cell=gru --workdir=runs/sst2_gru
    python experiments/sentiment.py --dataset=mr --fold=0 --workdir=runs/mr_lstm_fold0
    python experiments/sentiment.py --dataset=mr --fold=-1 --workdir=runs/mr_lstm_cv      # all 10 folds
    python experiments/sentiment.py --init_embeddings=runs/w2v_300/vectors.bin --workdir=runs/sst2_lstm_w2v

Data (``seqjax.data.sentiment``): SST-2's ``{train,dev,test}.tsv`` (GLUE's phrase-level training set, the 872 dev
and 1,821 labelled test sentences), or Movie Review polarity with fold --fold of --folds as test, 10% of the
others as dev (fixed folds; --fold=-1 runs every fold into <workdir>/fold_<k> and reports the mean and standard
deviation of their test accuracies). Model (``seqjax.models.classifier``): an embedding (optionally started from
word2vec vectors, --init_embeddings), recurrent layers or self-attention blocks, last/mean/max pooling, dropout,
a linear layer. After every epoch dev and test are evaluated; the best-dev state is kept in best/ and its test
accuracy, measured at that epoch and never used for selection, is the one reported in results.json.
"""

import functools
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import config, workdir
from seqjax import experiment as ex
from seqjax.data import batching
from seqjax.data import sentiment as data_lib
from seqjax.data.text import DataError, Vocab
from seqjax.models import classifier
from seqjax.models.word_vectors import WordVectors, load_word2vec

DATASETS = ("sst2", "mr")
DEFAULT_DATA = {"sst2": "../shared/data/sst2", "mr": "../shared/data/mr"}
ALL_FOLDS = -1


@config.declare
class Config:
    data: str = config.setting(
        "",
        "Directory of SST-2's train.tsv, dev.tsv, test.tsv (label<TAB>text, one header line), or of MR's "
        "rt-polarity.pos and .neg (Latin-1); default ../shared/data/<dataset>.",
        derive=lambda c: DEFAULT_DATA[c.dataset],
    )
    dataset: str = config.setting(
        "sst2", "SST-2 (its own dev and test) or Movie Review polarity (folds).", choices=DATASETS
    )
    folds: int = config.setting(
        10, "--dataset=mr: the folds of the cross-validation (the same for every --seed).", at_least=2
    )
    fold: int = config.setting(
        0,
        "--dataset=mr: the test fold, 0-based (10% of the others are dev); -1: every fold into <workdir>/fold_<k>.",
        at_least=ALL_FOLDS,
    )
    init_embeddings: str = config.setting(
        "",
        "A word2vec file (binary if it ends in .bin, else text) of dimension --embed: the vocabulary's words "
        "found in it start from their vectors, the others random.",
    )
    embed: int = config.setting(300, "Embedding size.", at_least=1)
    stack: config.Encoder = config.Encoder(hidden=150)
    pooling: str = config.setting(
        "last", "Sentence vector (last: the final state at each sentence's end).", choices=classifier.POOLINGS
    )
    dropout: float = config.setting(0.5, "Dropout between layers and on the sentence vector.", at_least=0, below=1)
    embed_dropout: float = config.setting(0.0, "Dropout on the word embeddings.", at_least=0, below=1)
    embed_scale: float = config.setting(1.0, "Embeddings start N(0, embed_scale^2).", above=0)
    min_count: int = config.setting(2, "Training tokens seen fewer times become <unk>.", at_least=1)
    max_len: int = config.setting(64, "Sentences keep their first max_len tokens.", at_least=1)
    batching: config.Batches = config.Batches(batch_size=64, pad_multiple=8)
    optimization: config.Optimization = config.Optimization()
    epochs: config.Epochs = config.Epochs(epochs=4)
    run: config.Run = config.Run()
    devices: config.Devices = config.Devices()

    def validate(self):
        if self.fold >= self.folds:
            raise config.ConfigError("--fold must be below --folds (or -1: every fold)")
        if self.dataset != "mr" and (self.fold, self.folds) != (0, 10):
            raise config.ConfigError("--fold and --folds are MR's cross-validation: give --dataset=mr")


class Inputs(NamedTuple):
    """The splits and, with --init_embeddings, the word vectors to start from."""

    data: data_lib.SentimentData
    vectors: WordVectors | None


def load_data(c: Config) -> Inputs:
    """The splits of ``c`` (MR's fold 0 with --fold=-1: each fold reads its own) and the vectors, checked."""
    fold = max(c.fold, 0)
    if c.dataset == "sst2":
        data = data_lib.load_sst2(c.data, c.min_count, c.max_len)
    else:
        data = data_lib.load_mr(c.data, c.folds, fold, c.min_count, c.max_len)
    if len(data.train) < c.batching.batch_size:
        raise DataError(
            f"{c.data}: {len(data.train)} training examples, fewer than --batch_size={c.batching.batch_size}"
        )
    return Inputs(data, load_init_vectors(c))


def load_init_vectors(c: Config) -> WordVectors | None:
    if not c.init_embeddings:
        return None
    path = Path(c.init_embeddings)
    try:
        vectors = load_word2vec(path, binary=path.suffix == ".bin")
    except DataError as e:
        raise DataError(f"--init_embeddings: {e}") from None
    if vectors.dim != c.embed:
        raise DataError(
            f"--init_embeddings={path}: the file's vectors have {vectors.dim} dimensions, "
            f"--embed={c.embed}; they must be equal"
        )
    return vectors


def initialise_embedding(embedding: jax.Array, vocab: Vocab, vectors: WordVectors) -> tuple[jax.Array, int]:
    """``embedding [V, e]`` with the rows of the vocabulary's words found in ``vectors`` (exact match) replaced by
    their vectors, except ``<pad>`` and ``<unk>``; and how many rows were replaced."""
    if embedding.shape != (len(vocab), vectors.dim):
        raise ValueError(f"embedding {embedding.shape} does not fit {len(vocab)} tokens of {vectors.dim} dimensions")
    rows = [(i, token) for i, token in enumerate(vocab.tokens) if token not in (data_lib.PAD, data_lib.UNK)]
    found = [(i, vectors.index(token)) for i, token in rows if token in vectors]
    embedding = jnp.asarray(embedding)
    if not found:
        return embedding, 0
    target, source = (np.asarray(column) for column in zip(*found, strict=True))
    return embedding.at[target].set(jnp.asarray(vectors.vectors[source], embedding.dtype)), len(found)


def model_config(c: Config, vocab_size: int) -> classifier.ClassifierConfig:
    return classifier.ClassifierConfig(
        vocab_size=vocab_size,
        **c.stack.model_fields(),
        embed_size=c.embed,
        pooling=c.pooling,
        dropout=c.dropout,
        embed_dropout=c.embed_dropout,
        embed_scale=c.embed_scale,
    )


def evaluate(model, params, data: data_lib.Encoded, c: Config) -> dict[str, float]:
    """``{"accuracy", "loss"}`` (loss: mean cross-entropy in nats) over every example of ``data``, no dropout."""
    correct, nll = 0, 0.0
    for indices, tokens, lengths, labels in data_lib.eval_batches(
        data, c.batching.eval_batch_size, c.batching.pad_multiple
    ):
        logits = np.asarray(classifier.predict(model, params, jnp.asarray(tokens), jnp.asarray(lengths)), np.float64)
        logits, labels = logits[: len(indices)], labels[: len(indices)]
        log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        correct += int(np.sum(np.argmax(logits, axis=1) == labels))
        nll -= float(np.sum(log_probs[np.arange(len(labels)), labels]))
    return {"accuracy": correct / len(data), "loss": nll / len(data)}


def plan(c: Config, inputs: Inputs) -> ex.Plan:
    data = inputs.data
    model = model_config(c, len(data.vocab))
    params = classifier.init_params(model, ex.keys(c.run.seed)[0])
    if inputs.vectors is not None:
        embedding, found = initialise_embedding(params["embedding"], data.vocab, inputs.vectors)
        params = {**params, "embedding": embedding}
        print(f"--init_embeddings: {found} of {len(data.vocab) - 2} vocabulary words found in {c.init_embeddings}")
    b = c.batching
    take = functools.partial(data_lib.take, data.train, pad_multiple=b.pad_multiple)

    def evaluate_splits(params) -> dict[str, float]:
        dev, test = (evaluate(model, params, split, c) for split in (data.dev, data.test))
        return {
            "dev_accuracy": dev["accuracy"],
            "dev_loss": dev["loss"],
            "test_accuracy": test["accuracy"],
            "test_loss": test["loss"],
        }

    def describe(m: dict) -> str:
        return (
            f"dev accuracy {m['dev_accuracy']:.4f} (loss {m['dev_loss']:.4f}), test accuracy {m['test_accuracy']:.4f}"
        )

    return ex.Plan(
        params=params,
        loss=ex.model_loss(classifier.batch_loss, model),
        batches=batching.step_batches(data.train.lengths, b.batch_size, c.run.seed, take, b.bucket, b.bucket_pool),
        steps_per_epoch=len(data.train) // b.batch_size,
        evaluate=evaluate_splits,
        select="dev_accuracy",
        describe=describe,
        files={"vocab.json": data.vocab.save},
    )


def report(c: Config, inputs: Inputs, plan: ex.Plan, fit, out: Path) -> dict[str, Any]:
    data, best, history = inputs.data, fit.best, fit.history
    results = {
        **ex.summary(fit, plan, examples=c.batching.batch_size),
        "vocab_size": len(data.vocab),
        "examples": {"train": len(data.train), "dev": len(data.dev), "test": len(data.test)},
        "dev_accuracy": [h["dev_accuracy"] for h in history],
        "test_accuracy": [h["test_accuracy"] for h in history],
        "best": {name: best[name] for name in ("step", "epoch", "dev_accuracy", "test_accuracy")},
        "final": {name: history[-1][name] for name in ("step", "epoch", "dev_accuracy", "test_accuracy")},
        "dataset": c.dataset,
    }
    if c.dataset == "mr":
        results.update(fold=c.fold, folds=c.folds)
    if inputs.vectors is not None:
        results["init_embeddings_found"] = sum(token in inputs.vectors for token in data.vocab.tokens[2:])
    print(
        f"best dev accuracy {best['dev_accuracy']:.4f} (epoch {best['epoch']:.2f}); "
        f"test accuracy at that epoch {best['test_accuracy']:.4f}",
        flush=True,
    )
    return results


def run(c: Config, inputs: Inputs, out: Path) -> dict[str, Any]:
    """One run, or with --fold=-1 every MR fold in turn, each a run in ``out/fold_<k>`` (resumable alike): then
    ``out/results.json`` holds each fold's best-dev dev and test accuracy and the mean and (ddof=1) standard
    deviation of the test accuracies."""
    if c.fold != ALL_FOLDS:
        return ex.run_plan(ONE_RUN, c, inputs, out)
    dev, test = [], []
    with ex.claimed(EXPERIMENT, c, out):
        for k in range(c.folds):
            print(f"fold {k} of {c.folds}", flush=True)
            fold = config.replace(c, fold=k)
            best = ex.run_plan(ONE_RUN, fold, load_data(fold), out / f"fold_{k}")["best"]
            dev.append(best["dev_accuracy"])
            test.append(best["test_accuracy"])
        results = {
            "folds": c.folds,
            "dev_accuracy": dev,
            "test_accuracy": test,
            "test_accuracy_mean": float(np.mean(test)),
            "test_accuracy_std": float(np.std(test, ddof=1)),
        }
        workdir.write_json(out / ex.RESULTS_JSON, results)
    print(
        f"{c.folds}-fold cross-validation: test accuracy {results['test_accuracy_mean']:.4f} "
        f"+- {results['test_accuracy_std']:.4f} (std over folds)",
        flush=True,
    )
    return results


def load_trained(run_dir: str | Path) -> tuple[classifier.ClassifierConfig, Vocab, Any, int]:
    """``(model, vocabulary, params, step)`` of a run's best-dev checkpoint, for predictions."""
    run_dir = Path(run_dir)
    c = config.build(Config, workdir.read_record(run_dir, EXPERIMENT.name))
    vocab = data_lib.check_vocab(Vocab.load(run_dir / "vocab.json"), str(run_dir / "vocab.json"))
    model = model_config(c, len(vocab))
    params = classifier.init_params(model, ex.keys(c.run.seed)[0])  # the structure the checkpoint restores into
    like = ex.Plan(params, ex.model_loss(classifier.batch_loss, model), batches=None, steps_per_epoch=1)
    state = ex.restore_best(c, like, run_dir)
    return model, vocab, state.params, int(state.step)


ONE_RUN = ex.Experiment("sentiment", Config, load=load_data, plan=plan, report=report)
EXPERIMENT = ONE_RUN._replace(run=run)

if __name__ == "__main__":
    ex.main(EXPERIMENT)
