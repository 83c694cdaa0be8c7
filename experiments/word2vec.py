r"""word2vec: skip-gram or CBOW on a text corpus, evaluated on analogies and word similarity.

    python experiments/word2vec.py --workdir=runs/w2v_sg                   # skip-gram on PTB
    python experiments/word2vec.py --model=cbow --workdir=runs/w2v_cbow
    python experiments/word2vec.py --workdir=runs/w2v_sg --query="king - man + woman"
    python experiments/word2vec.py --workdir=runs/w2v_sg --query="good ~ great"

Reads the corpus (one sentence per line), builds the vocabulary, trains skip-gram or CBOW
(``seqjax.models.word2vec_training``), writes each epoch's statistics to metrics.jsonl and then checkpoints it, and
at the end writes vectors.bin and vectors.txt (word2vec's C formats, readable by gensim, most frequent first),
vocab.tsv and results.json (every epoch's statistics, words/s, and the analogy and similarity evaluation). With
--query nothing is trained: the saved vectors answer "king - man + woman" (most similar to the sum), "good ~ great"
(cosine) or a word (neighbours).

A rerun of a killed run resumes after its last checkpoint; results.json then holds every epoch once and the
training time of all its processes. A NaN or inf stops the run with one line naming the update (or the epoch) and
the last checkpoint, all of whose parameters are finite; nothing of that epoch is saved. A batch too big for the
memory, an --eval_dir that cannot be read and a changed fixed flag (--epochs, --alpha, ...) are refused before
the workdir is touched.

Training has its own loop (``seqjax.models.word2vec_training``), not ``seqjax.runner``'s: each update changes only
the rows of the [V, D] tables its batch reads (word2vec.c's sparse SGD, thousands of updates per jitted call, an
epoch's examples drawn by subsampling), where the runner's step computes and applies the dense gradient of both
whole tables (and three global norms over them). Measured in this loop on PTB, one epoch, 3 interleaved runs each
(docs/word2vec.md): the dense update (--optimizer=sgd) trains at 103k-149k words/s, median 109k, against the
pure-JAX sparse update's 141k-181k, median 169k. On the CPU the sparse update runs as a C++ kernel (--kernel;
``seqjax.models.word2vec_native``), compiled on first use: 551k words/s on the same machine.
"""

import dataclasses
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import config, runner, workdir
from seqjax import experiment as ex
from seqjax.checkpoints import Checkpointer
from seqjax.data import word2vec_data as data
from seqjax.data.text import DataError, check_encoding
from seqjax.metric_writers import MetricWriter
from seqjax.models import embedding_eval, word2vec
from seqjax.models import word2vec_training as training
from seqjax.models.word_vectors import WordVectors, load_word2vec, save_word2vec
from seqjax.train import TrainState


@config.declare
class Config:
    """The experiment's settings; the training defaults are gensim's."""

    corpus: str = config.setting(
        "../shared/data/ptb/ptb.train.txt", "Text file, one sentence per line, words separated by whitespace."
    )
    encoding: str = config.setting(
        "utf-8", "The corpus's text encoding (e.g. latin-1 for the Lee corpus).", check=check_encoding
    )
    model: str = config.setting("skipgram", "Skip-gram or CBOW.", choices=training.MODELS)
    loss: str = config.setting(
        "negative",
        "negative: negative sampling; softmax: full softmax (small vocabularies only).",
        choices=training.LOSSES,
    )
    dim: int = config.setting(100, "Vector size.", at_least=1)
    init_scale: float = config.setting(
        1.0, "Input vectors start uniform in [-s/dim, s/dim]: 1 is gensim's range, 0.5 word2vec.c's.", above=0
    )
    window: int = config.setting(
        5, "Maximum distance between the center and a context word (each position draws 1..window).", at_least=1
    )
    negative: int = config.setting(5, "Noise words per example (the negative loss).", at_least=1)
    shared_negatives: int = config.setting(
        0, "If > 0, one set of this many noise words per batch, weighted negative/S (faster).", at_least=0
    )
    ns_exponent: float = config.setting(0.75, "Noise distribution: unigram counts to this power.")
    sample: float = config.setting(1e-3, "Subsampling threshold for frequent words (0: none).", at_least=0, below=1)
    min_count: int = config.setting(5, "Ignore words with fewer occurrences.", at_least=1)
    max_vocab: int = config.setting(0, "Keep at most this many most frequent words (0: no limit).", at_least=0)
    alpha: float = config.setting(0.025, "Initial learning rate.", above=0)
    min_alpha: float = config.setting(0.0001, "Final learning rate (linear decay).", at_least=0)
    epochs: int = config.setting(5, "Passes over the corpus (the learning rate decays over all of them).", at_least=1)
    optimizer: str = config.setting(
        "sparse_sgd",
        "sparse_sgd: word2vec.c's update of the rows a batch touches; sgd, momentum, adam, rmsprop, "
        "adagrad: optax on the dense gradient of the whole tables (small vocabularies); all decay alpha linearly.",
        choices=training.OPTIMIZERS,
    )
    batch_size: int = config.setting(4096, "Examples per SGD step.", at_least=1)
    kernel: str = config.setting(
        "auto",
        "The sparse SGD update: native (a C++ kernel, compiled on first use), jax (pure JAX), or auto (native "
        "where it applies and builds, else jax with one line saying why). Both give the same vectors up to float "
        "rounding.",
        choices=training.KERNELS,
        fixed=False,
    )
    threads: int = config.setting(
        0,
        "Threads of the native update (0: every CPU, at most 8); the result does not depend on them.",
        at_least=0,
        fixed=False,
    )
    num_devices: int = config.setting(
        0,
        "Split every batch over this many devices (data parallel; the batch size must divide); 0: all.",
        at_least=0,
        fixed=False,
    )
    seed: int = config.setting(0, "Random seed (initialisation, subsampling, windows, noise words).")
    eval_dir: str = config.setting(
        "../shared/data/word2vec_eval",
        "Folder with questions-words.txt, wordsim353.tsv, simlex999.txt (missing files are skipped).",
        fixed=False,
    )
    restrict_vocab: int = config.setting(
        30000,
        "Analogies use only this many most frequent words, as word2vec's compute-accuracy.",
        at_least=1,
        fixed=False,
    )
    query: str = config.setting("", "Answer this from the workdir's vectors instead of training.", fixed=False)
    topn: int = config.setting(10, "Neighbours listed for a --query.", at_least=1, fixed=False)

    def training(self) -> training.TrainConfig:
        return training.TrainConfig(
            model=self.model,
            loss=self.loss,
            window=self.window,
            negative=self.negative,
            shared_negatives=self.shared_negatives,
            ns_exponent=self.ns_exponent,
            sample=self.sample,
            alpha=self.alpha,
            min_alpha=self.min_alpha,
            epochs=self.epochs,
            optimizer=self.optimizer,
            batch_size=self.batch_size,
            seed=self.seed,
            kernel=self.kernel,
            threads=self.threads,
        )


def load_data(c: Config) -> data.Prepared | None:
    """The encoded corpus (None with --query: nothing is trained), after checking that --eval_dir can be read."""
    if c.query:
        return None
    try:
        embedding_eval.check_dir(c.eval_dir)
    except DataError as e:
        raise DataError(f"--eval_dir: {e}") from None
    prepared = data.prepare(c.corpus, c.encoding, c.min_count, c.max_vocab)
    print(f"{c.corpus}: {prepared.raw_words:,} words, vocabulary {len(prepared.vocab):,}")
    return prepared


def available_memory() -> int:
    """Bytes the host can still give: Linux's MemAvailable (free memory and reclaimable caches), else free pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def check_memory(c: Config, vocab_size: int) -> None:
    """``ConfigError`` (one line naming --batch_size) if training cannot fit in the memory available now.

    The need is ``training.memory_bytes``, a lower bound; the memory is the device's where it reports a
    limit (an accelerator, each holding its share of a batch), else the host's (``available_memory``).
    """
    train_config = c.training()
    limit = (jax.local_devices()[0].memory_stats() or {}).get("bytes_limit")
    if limit is not None:
        shares = c.num_devices or jax.device_count()
        train_config = dataclasses.replace(train_config, batch_size=-(-c.batch_size // shares))
    else:
        limit = available_memory()
    needed = training.memory_bytes(train_config, vocab_size, c.dim)
    if needed > limit:
        also = {"softmax": " (or use --loss=negative)", "negative": " or --negative"}[c.loss]
        also = " or --shared_negatives" if c.loss == "negative" and c.shared_negatives else also
        raise config.ConfigError(
            f"--batch_size={c.batch_size}: training needs at least {needed / 2**30:,.1f} GiB at once (a chunk of "
            f"{train_config.chunk_batches} batches and one step's rows), more than the {limit / 2**30:,.1f} GiB "
            f"available; lower --batch_size{also}"
        )


def read_history(path: Path) -> list[dict]:
    """The per-epoch lines of ``path`` (``metrics.jsonl``, ``MetricWriter``'s) without their "step"."""
    if not path.is_file():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [{name: value for name, value in line.items() if name != "step"} for line in lines]


def nonfinite_message(error: training.NonFiniteUpdate, history: list[dict], c: Config, latest: Path | None) -> str:
    """One line: where training met a NaN or inf, counted as the progress lines count, and what was kept."""
    where = str(error)
    earlier = history[: error.epoch - 1]
    if error.update and [h["epoch"] for h in earlier] == list(range(1, error.epoch)):
        update = sum(training.num_batches(h["examples"], c.training()) for h in earlier) + error.update
        where = f"update {error.update} of epoch {error.epoch} (update {update} of the run) gave a non-finite loss"
    kept = f"the last checkpoint is {latest}" if latest is not None else "no checkpoint was saved"
    return f"{where}: stopped; {kept}"


def train(c: Config, out: Path, prepared: data.Prepared, log=print) -> dict:
    """Trains (resuming from the workdir's checkpoint), saves the vectors, evaluates; returns results.json's dict.

    Every epoch's statistics go to metrics.jsonl before its checkpoint; a resume keeps the lines up to the
    restored epoch, so the history and the training time span every process of the run. A NaN or inf stops
    the run with ``runner.NonFiniteError`` before anything of that epoch is saved.
    """
    vocab, corpus = prepared.vocab, prepared.corpus
    init_key, noise_key = jax.random.split(jax.random.key(c.seed))
    params = word2vec.init_params(init_key, len(vocab), c.dim, c.init_scale)
    checkpointer = Checkpointer(out, every=1, keep=2)
    opt_state = training.init_opt_state(c.training(), params)
    restored = checkpointer.restore_latest(TrainState(params, opt_state, jnp.zeros((), jnp.int32), noise_key))
    start_epoch = 0 if restored is None else int(restored.step)
    if restored is not None:
        params, opt_state = restored.params, restored.opt_state
        log(f"resuming after epoch {start_epoch}")
    workdir.write_atomic(
        out / "vocab.tsv", "".join(f"{w}\t{n}\n" for w, n in zip(vocab.words, vocab.counts, strict=True))
    )
    metrics = MetricWriter(out, resume_step=start_epoch + 1, tensorboard=False)
    history = read_history(metrics.path)
    before = history[-1]["train_seconds"] if history else 0.0
    start = time.perf_counter()

    def on_epoch(stats: training.EpochStats, params, opt_state):
        line = {**dataclasses.asdict(stats), "train_seconds": before + time.perf_counter() - start}
        metrics.write(stats.epoch, line)  # before the checkpoint: a resume keeps the line if it keeps the epoch
        history.append(line)
        checkpointer.save(TrainState(params, opt_state, jnp.asarray(stats.epoch, jnp.int32), noise_key), force=True)
        log(
            f"epoch {stats.epoch}: loss {stats.mean_loss:.4f}  {stats.effective_words} words kept of "
            f"{stats.vocab_words}, {stats.examples} examples  {stats.vocab_words / stats.seconds:,.0f} words/s"
        )

    try:
        params, _ = training.train(
            params, corpus, vocab, c.training(), noise_key, start_epoch, on_epoch, opt_state, ex.mesh(c)
        )
    except training.NonFiniteUpdate as e:
        latest = checkpointer.latest_step()
        latest = None if latest is None else checkpointer.directory / str(latest)
        raise runner.NonFiniteError(nonfinite_message(e, history, c, latest)) from None
    finally:
        checkpointer.close()
        metrics.close()
    vectors = WordVectors(vocab.words, np.asarray(params.input))
    save_word2vec(out / "vectors.bin", vectors, binary=True)
    save_word2vec(out / "vectors.txt", vectors, binary=False)
    evaluation = embedding_eval.evaluate_dir(vectors, c.eval_dir, c.restrict_vocab)
    log(embedding_eval.describe(evaluation))
    epochs_run = len(history)
    train_seconds = history[-1]["train_seconds"] if history else 0.0
    return {
        "config": config.flat(c),
        "vocab_size": len(vocab),
        "raw_words": prepared.raw_words,
        "vocab_words": len(corpus),
        "epochs_run": epochs_run,
        "started_at_epoch": start_epoch,
        "train_seconds": train_seconds,
        "raw_words_per_s": prepared.raw_words * epochs_run / train_seconds if epochs_run else None,
        "effective_words_per_s": sum(h["effective_words"] for h in history) / train_seconds if epochs_run else None,
        "history": history,
        "evaluation": evaluation,
    }


def run(c: Config, prepared: data.Prepared | None, out: Path) -> dict:
    """Trains into ``out`` and writes results.json, or with --query answers it from ``out``'s vectors."""
    if c.query:
        try:
            answers = query(load_vectors(out), c.query, c.topn)
        except KeyError as e:
            raise config.ConfigError(f"--query: {e.args[0]}") from None
        except ValueError as e:
            raise config.ConfigError(str(e)) from None
        for word, score in answers:
            print(f"{score:+.4f}  {word}")
        return {}
    check_memory(c, len(prepared.vocab))
    try:
        training.update_path(c.training(), ex.mesh(c))
    except ValueError as e:
        raise config.ConfigError(str(e)) from None
    with ex.claimed(EXPERIMENT, c, out):
        results = train(c, out, prepared)
        workdir.write_json(out / ex.RESULTS_JSON, results)
    return results


def report_line(results: dict) -> str:
    if not results:
        return ""
    rate = results["raw_words_per_s"]
    trained = results["started_at_epoch"] < results["config"]["epochs"]
    return f"{f'{rate:,.0f} words/s; ' if trained else 'all epochs were done already; '}wrote vectors.bin, " + (
        "vectors.txt, results.json"
    )


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


EXPERIMENT = ex.Experiment("word2vec", Config, load=load_data, run=run, summary=report_line)

if __name__ == "__main__":
    ex.main(EXPERIMENT)
