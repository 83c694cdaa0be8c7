"""The word2vec experiment: train on a text corpus, evaluate, save in word2vec's formats, answer queries.

``run`` reads the corpus (one sentence per line), builds the vocabulary, trains skip-gram or CBOW
(``seqjax.models.word2vec_training``), checkpoints after every epoch (a rerun resumes), and writes
into the workdir:

- ``vectors.bin`` and ``vectors.txt``: the input vectors in the word2vec C formats, most frequent first;
- ``vocab.tsv``: word and count per line;
- ``results.json``: the flags, per-epoch stats, words/s, and the evaluation (``evaluate``).

``query`` answers "king - man + woman" (most similar to the sum), "good ~ great" (cosine) and a
single word (its neighbours) from saved vectors.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import parallel, workdir
from seqjax.checkpoints import Checkpointer
from seqjax.data import word2vec_data as data
from seqjax.data.text import DataError
from seqjax.models import embedding_eval, word2vec
from seqjax.models import word2vec_training as training
from seqjax.models.word_vectors import WordVectors, load_word2vec, save_word2vec
from seqjax.train import TrainState

ANALOGIES = "questions-words.txt"
PAIRS = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}


@dataclasses.dataclass(frozen=True)
class Config:
    """The experiment's flags (``experiments/word2vec.py``); training defaults are gensim's."""

    corpus: str = "../shared/data/ptb/ptb.train.txt"
    encoding: str = "utf-8"
    model: str = "skipgram"
    loss: str = "negative"
    dim: int = 100
    init_scale: float = 1.0  # input vectors ~ U(-s/dim, s/dim): 1 is gensim's, 0.5 word2vec.c's
    window: int = 5
    negative: int = 5
    shared_negatives: int = 0
    ns_exponent: float = 0.75
    sample: float = 1e-3
    min_count: int = 5
    max_vocab: int = 0  # 0: no limit
    alpha: float = 0.025
    min_alpha: float = 0.0001
    epochs: int = 5
    optimizer: str = "sparse_sgd"
    batch_size: int = 4096
    num_devices: int = 0  # split every batch over this many devices (data parallel); 0: all visible
    seed: int = 0
    eval_dir: str = "../shared/data/word2vec_eval"
    restrict_vocab: int = 30000

    def training(self) -> training.TrainConfig:
        return training.TrainConfig(
            model=self.model, loss=self.loss, window=self.window, negative=self.negative,
            shared_negatives=self.shared_negatives, ns_exponent=self.ns_exponent, sample=self.sample,
            alpha=self.alpha, min_alpha=self.min_alpha, epochs=self.epochs, optimizer=self.optimizer,
            batch_size=self.batch_size, seed=self.seed,
        )  # fmt: skip


# Flags a checkpoint in the workdir depends on: a rerun may change only the others (epochs, evaluation).
FIXED_FLAGS = (
    "corpus", "encoding", "model", "loss", "dim", "init_scale", "window", "negative", "shared_negatives",
    "ns_exponent", "sample", "min_count", "max_vocab", "alpha", "min_alpha", "optimizer", "batch_size", "seed",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A read corpus: its sentences' word count, vocabulary and encoding."""

    raw_words: int
    vocab: data.Vocabulary
    corpus: data.Corpus


def prepare(config: Config) -> Prepared:
    """Reads and encodes ``config.corpus``; ``DataError`` (naming the file) for a bad or empty corpus."""
    sentences = data.read_sentences(config.corpus, config.encoding)
    vocab = data.build_vocab(sentences, config.min_count, config.max_vocab or None, source=config.corpus)
    return Prepared(sum(map(len, sentences)), vocab, data.encode(sentences, vocab))


def evaluate(vectors: WordVectors, eval_dir: str | Path, restrict_vocab: int) -> dict:
    """Analogy accuracy (3CosAdd and 3CosMul) and WordSim-353 / SimLex-999 correlations, for the files present."""
    eval_dir = Path(eval_dir)
    results = {}
    if (eval_dir / ANALOGIES).is_file():
        for method in ("add", "mul"):
            r = embedding_eval.evaluate_analogies(vectors, eval_dir / ANALOGIES, restrict_vocab, method=method)
            results[f"analogy_{method}"] = {
                "accuracy": r.accuracy, "semantic": r.semantic_accuracy, "syntactic": r.syntactic_accuracy,
                "coverage": r.coverage, "answered": r.total, "questions": r.questions, "malformed": r.malformed,
                "sections": {s.name: [s.correct, s.total] for s in r.sections},
            }  # fmt: skip
    for name, filename in PAIRS.items():
        if (eval_dir / filename).is_file():
            r = embedding_eval.evaluate_word_pairs(vectors, eval_dir / filename)
            results[name] = {
                "spearman": r.spearman, "pearson": r.pearson, "oov_ratio": r.oov_ratio,
                "pairs_used": r.pairs_used, "malformed": r.malformed,
            }  # fmt: skip
    return results


def summary(evaluation: dict) -> str:
    """One line per evaluation, for the console."""
    lines = []
    for method in ("add", "mul"):
        if (a := evaluation.get(f"analogy_{method}")) is not None:
            lines.append(
                f"analogy 3Cos{method.capitalize()}: {a['accuracy']:.2%} ({a['answered']}/{a['questions']} answered;"
                f" semantic {a['semantic']:.2%}, syntactic {a['syntactic']:.2%})"
            )
    for name in PAIRS:
        if (p := evaluation.get(name)) is not None:
            lines.append(f"{name}: Spearman {p['spearman']:.3f}, Pearson {p['pearson']:.3f}, OOV {p['oov_ratio']:.1%}")
    return "\n".join(lines)


def run(config: Config, out: Path, prepared: Prepared, log=print) -> dict:
    """Trains (resuming from the workdir's checkpoint), saves the vectors, evaluates; returns results.json's dict."""
    vocab, corpus = prepared.vocab, prepared.corpus
    key = jax.random.key(config.seed)
    init_key, noise_key = jax.random.split(key)
    params = word2vec.init_params(init_key, len(vocab), config.dim, config.init_scale)
    checkpointer = Checkpointer(out, every=1, keep=2)
    opt_state = training.init_opt_state(config.training(), params)
    template = TrainState(params, opt_state, jnp.zeros((), jnp.int32), noise_key)
    restored = checkpointer.restore_latest(template)
    start_epoch = 0 if restored is None else int(restored.step)
    if restored is not None:
        params, opt_state = restored.params, restored.opt_state
        log(f"resuming after epoch {start_epoch}")
    workdir.write_atomic(
        out / "vocab.tsv", "".join(f"{w}\t{c}\n" for w, c in zip(vocab.words, vocab.counts, strict=True))
    )

    def on_epoch(stats: training.EpochStats, params, opt_state):
        state = TrainState(params, opt_state, jnp.asarray(stats.epoch, jnp.int32), noise_key)
        checkpointer.save(state, force=True)
        log(
            f"epoch {stats.epoch}: loss {stats.mean_loss:.4f}  {stats.effective_words} words kept of "
            f"{stats.vocab_words}, {stats.examples} examples  {stats.vocab_words / stats.seconds:,.0f} words/s"
        )

    start = time.perf_counter()
    mesh = parallel.mesh_for(config.num_devices, config.batch_size)
    params, history = training.train(
        params, corpus, vocab, config.training(), noise_key, start_epoch, on_epoch, opt_state, mesh
    )
    train_seconds = time.perf_counter() - start
    checkpointer.close()
    vectors = WordVectors(vocab.words, np.asarray(params.input))
    save_word2vec(out / "vectors.bin", vectors, binary=True)
    save_word2vec(out / "vectors.txt", vectors, binary=False)
    evaluation = evaluate(vectors, config.eval_dir, config.restrict_vocab)
    log(summary(evaluation))
    epochs_run = len(history)
    results = {
        "config": dataclasses.asdict(config),
        "vocab_size": len(vocab),
        "raw_words": prepared.raw_words,
        "vocab_words": len(corpus),
        "epochs_run": epochs_run,
        "train_seconds": train_seconds,
        "raw_words_per_s": prepared.raw_words * epochs_run / train_seconds if epochs_run else None,
        "effective_words_per_s": sum(s.effective_words for s in history) / train_seconds if epochs_run else None,
        "history": [dataclasses.asdict(s) for s in history],
        "evaluation": evaluation,
    }
    workdir.write_json(out / "results.json", results)
    return results


def parse_query(text: str) -> tuple[str, list[str], list[str]]:
    """``("similarity", [a, b], [])`` for "a ~ b", else ``("similar", positive, negative)`` for "a - b + c".

    Operators are tokens of their own (a word such as "well-known" keeps its hyphen); words and
    operators alternate, starting with a word.
    """
    tokens = text.split()
    operators = tokens[1::2]
    words = tokens[0::2]
    form = "expected 'word ~ word' or words joined by + and -, e.g. 'king - man + woman'"
    if not tokens or len(tokens) % 2 == 0 or any(op not in ("+", "-", "~") for op in operators):
        raise ValueError(f"--query {text!r}: {form}")
    if any(w in ("+", "-", "~") for w in words) or ("~" in operators and operators != ["~"]):
        raise ValueError(f"--query {text!r}: {form}")
    if operators == ["~"]:
        return "similarity", words, []
    positive = [words[0]] + [w for op, w in zip(operators, words[1:], strict=True) if op == "+"]
    negative = [w for op, w in zip(operators, words[1:], strict=True) if op == "-"]
    return "similar", positive, negative


def query(vectors: WordVectors, text: str, topn: int = 10) -> list[tuple[str, float]]:
    """Answers a query (``parse_query``); an unknown word is a ``KeyError`` naming it."""
    kind, positive, negative = parse_query(text)
    for word in positive + negative:
        vectors.index(word)
    if kind == "similarity":
        return [(f"{positive[0]} ~ {positive[1]}", vectors.similarity(*positive))]
    return vectors.most_similar(positive, negative, topn=topn)


def load_vectors(out: str | Path) -> WordVectors:
    """The vectors a run wrote into ``out`` (``vectors.bin``); ``DataError`` if there are none."""
    path = Path(out) / "vectors.bin"
    if not path.is_file():
        raise DataError(f"{path}: no such file (train into this --workdir first)")
    return load_word2vec(path, binary=True)
