r"""word2vec in seqjax vs gensim on the same corpus and settings, over several seeds (needs gensim).

    pip install -e '.[benchmark]'
    python benchmarks/word2vec_vs_gensim.py --workdir=runs/w2v_vs_gensim           # PTB, 3 seeds
    python benchmarks/word2vec_vs_gensim.py --corpus=text8.txt --seeds=0 --workdir=runs/w2v_text8

Prints per-run lines and a table (mean ± spread over seeds, and seqjax / gensim ratios); writes
results.json and results.md into --workdir. See word2vec_vs_gensim.

seqjax's word2vec and gensim's, side by side: same corpus, same settings, several seeds, one process.

For every model (skip-gram, CBOW) and seed, each system builds its vocabulary, then trains; only
``train`` is timed (for seqjax that includes compiling the step, for gensim its worker threads).
Words/s counts the corpus's words (out-of-vocabulary ones included, gensim's "raw words") times
epochs over the training seconds. Both systems' vectors are scored by the same evaluators
(``seqjax.models.embedding_eval``, which equal gensim's own; the tests check that).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np
from absl import app, flags

from seqjax import command_line, workdir
from seqjax.data import word2vec_data
from seqjax.data.text import DataError
from seqjax.models import embedding_eval, word2vec
from seqjax.models import word2vec_training as training
from seqjax.models.word2vec_training import MODELS
from seqjax.models.word_vectors import WordVectors

SYSTEMS = ("gensim", "seqjax")
METRICS = ("words_per_s", "analogy", "semantic", "syntactic", "wordsim353", "simlex999")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What both systems share (the issue's comparison: window 5, dim 100, negative 5, ...)."""

    corpus: str = "../shared/data/ptb/ptb.train.txt"
    dim: int = 100
    window: int = 5
    negative: int = 5
    sample: float = 1e-3
    min_count: int = 5
    epochs: int = 5
    alpha: float = 0.025
    min_alpha: float = 0.0001
    workers: int = 2  # gensim's threads
    batch_size: int = 4096  # seqjax's examples per step
    shared_negatives: int = 0  # seqjax: > 0 shares S noise words per batch
    kernel: str = "auto"  # seqjax's update: the native kernel where it applies, or "native", or "jax"
    threads: int = 0  # seqjax's native kernel threads; 0: every CPU this process may use, at most 8
    eval_dir: str = "../shared/data/word2vec_eval"
    restrict_vocab: int = 30000


def import_gensim():
    try:
        import gensim.models
    except ImportError as e:
        raise ImportError("gensim is not installed: pip install -e '.[benchmark]' (it is not a core dependency)") from e
    return gensim.models


def scores(vectors: WordVectors, settings: Settings) -> dict:
    evaluation = embedding_eval.evaluate_dir(vectors, settings.eval_dir, settings.restrict_vocab)
    analogy = evaluation.get("analogy_add", {})
    return {
        "analogy": analogy.get("accuracy"),
        "semantic": analogy.get("semantic"),
        "syntactic": analogy.get("syntactic"),
        "wordsim353": evaluation.get("wordsim353", {}).get("spearman"),
        "simlex999": evaluation.get("simlex999", {}).get("spearman"),
        "analogy_mul": evaluation.get("analogy_mul", {}).get("accuracy"),
    }


def run_gensim(model: str, seed: int, settings: Settings) -> dict:
    models = import_gensim()
    sentences = models.word2vec.LineSentence(settings.corpus)
    w2v = models.Word2Vec(
        vector_size=settings.dim, window=settings.window, negative=settings.negative, hs=0,
        sample=settings.sample, min_count=settings.min_count, sg=int(model == "skipgram"), alpha=settings.alpha,
        min_alpha=settings.min_alpha, workers=settings.workers, seed=seed, epochs=settings.epochs,
    )  # fmt: skip
    w2v.build_vocab(sentences)
    start = time.perf_counter()
    _, raw_words = w2v.train(sentences, total_examples=w2v.corpus_count, epochs=settings.epochs)
    seconds = time.perf_counter() - start
    kv = w2v.wv
    vectors = WordVectors(tuple(kv.index_to_key), np.asarray(kv.vectors))
    return {"seconds": seconds, "words_per_s": raw_words / seconds, **scores(vectors, settings)}


def run_seqjax(model: str, seed: int, settings: Settings, prepared: word2vec_data.Prepared) -> dict:
    config = training.TrainConfig(
        model=model, window=settings.window, negative=settings.negative, shared_negatives=settings.shared_negatives,
        sample=settings.sample, alpha=settings.alpha, min_alpha=settings.min_alpha, epochs=settings.epochs,
        batch_size=settings.batch_size, seed=seed, kernel=settings.kernel, threads=settings.threads,
    )  # fmt: skip
    init_key, noise_key = jax.random.split(jax.random.key(seed))
    params = word2vec.init_params(init_key, len(prepared.vocab), settings.dim)
    start = time.perf_counter()
    params, _ = training.train(params, prepared.corpus, prepared.vocab, config, noise_key)
    vectors = WordVectors(prepared.vocab.words, np.asarray(params.input))  # waits for the last step
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "words_per_s": prepared.raw_words * settings.epochs / seconds,
        **scores(vectors, settings),
    }


def compare(
    settings: Settings, models: Sequence[str], seeds: Sequence[int], log: Callable[[str], None] = print
) -> list[dict]:
    """Rows ``{"system", "model", "seed", "seconds", "words_per_s", "analogy", ...}``, systems interleaved by seed."""
    prepared = word2vec_data.prepare(settings.corpus, min_count=settings.min_count)
    rows = []
    for model in models:
        for seed in seeds:
            for system in SYSTEMS:
                if system == "gensim":
                    row = run_gensim(model, seed, settings)
                else:
                    row = run_seqjax(model, seed, settings, prepared)
                rows.append({"system": system, "model": model, "seed": seed, **row})
                quality = "  ".join(
                    f"{name} {row[metric]:.4f}" for name, metric in (("analogy", "analogy"), ("ws353", "wordsim353"),
                                                                    ("simlex", "simlex999")) if row[metric] is not None
                )  # fmt: skip
                log(f"{system:6s} {model:8s} seed {seed}: {row['words_per_s']:9,.0f} words/s  {quality}")
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Per (model, system): mean and spread (max - min over seeds) of every metric; then per model the
    seqjax / gensim ratio of words/s and the seqjax - gensim difference of every quality metric."""
    table = []
    for model in dict.fromkeys(r["model"] for r in rows):
        means = {}
        for system in SYSTEMS:
            picked = [r for r in rows if r["model"] == model and r["system"] == system]
            entry = {"model": model, "system": system, "seeds": len(picked)}
            for metric in METRICS:
                values = np.array([r[metric] for r in picked if r[metric] is not None], dtype=np.float64)
                if len(values):
                    entry[metric] = float(values.mean())
                    entry[f"{metric}_spread"] = float(values.max() - values.min())
            means[system] = entry
            table.append(entry)
        gensim, seqjax = means["gensim"], means["seqjax"]
        versus = {"words_per_s": seqjax["words_per_s"] / gensim["words_per_s"]}  # a ratio
        versus |= {m: seqjax[m] - gensim[m] for m in METRICS[1:] if m in seqjax and m in gensim}  # differences
        table.append({"model": model, "system": "seqjax vs gensim", **versus})
    return table


def markdown(table: list[dict]) -> str:
    """The summary as a Markdown table: mean ± spread per metric."""
    lines = [
        "| model | system | words/s | analogy | semantic | syntactic | WS-353 Spearman | SimLex Spearman |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in table:
        cells = []
        for metric in METRICS:
            if metric not in entry:
                cells.append("")
            elif entry["system"] == "seqjax vs gensim":
                if metric == "words_per_s":
                    cells.append(f"{entry[metric]:.2f}x")
                elif metric in ("analogy", "semantic", "syntactic"):
                    cells.append(f"{100 * entry[metric]:+.2f} points")
                else:
                    cells.append(f"{entry[metric]:+.3f}")
            elif metric == "words_per_s":
                cells.append(f"{entry[metric]:,.0f} ± {entry[metric + '_spread']:,.0f}")
            elif metric in ("analogy", "semantic", "syntactic"):
                cells.append(f"{entry[metric]:.2%} ± {entry[metric + '_spread']:.2%}")
            else:
                cells.append(f"{entry[metric]:.3f} ± {entry[metric + '_spread']:.3f}")
        lines.append(f"| {entry['model']} | {entry['system']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    settings = Settings(**{field.name: flags.FLAGS[field.name].value for field in dataclasses.fields(Settings)})
    seeds = [int(s) for s in SEEDS.value]
    try:
        import_gensim()
        out = workdir.prepare(WORKDIR.value)
        rows = compare(settings, MODELS_FLAG.value, seeds)
    except (ImportError, DataError, workdir.WorkdirError) as e:
        raise app.UsageError(str(e)) from e
    workdir.write_json(out / "results.json", {"settings": dataclasses.asdict(settings), "rows": rows})
    table = summarize(rows)
    report = markdown(table)
    print(report)
    workdir.write_json(out / "results.json", {"settings": dataclasses.asdict(settings), "rows": rows, "table": table})
    workdir.write_atomic(out / "results.md", report + "\n")


if __name__ == "__main__":  # the flags exist only when this is the script run: importing it defines none
    HELP = {
        "corpus": "Text file, one sentence per line.",
        "dim": "Vector size.",
        "window": "Maximum window.",
        "negative": "Noise words per example.",
        "sample": "Subsampling threshold.",
        "min_count": "Minimum word count.",
        "epochs": "Passes over the corpus.",
        "alpha": "Initial learning rate.",
        "min_alpha": "Final learning rate.",
        "workers": "gensim's worker threads.",
        "batch_size": "seqjax's examples per SGD step.",
        "shared_negatives": "seqjax: if > 0, this many noise words shared by a batch.",
        "kernel": "seqjax's update: auto (the native kernel where it applies), native, or jax (the pure-JAX loop).",
        "threads": "seqjax's native kernel threads (0: every CPU this process may use, at most 8).",
        "eval_dir": "Folder with questions-words.txt, wordsim353.tsv, simlex999.txt.",
        "restrict_vocab": "Analogies use this many most frequent words.",
    }
    WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)
    MODELS_FLAG = flags.DEFINE_list("models", list(MODELS), f"Any of {', '.join(MODELS)}.")
    SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; each system runs once per seed.")
    for field in dataclasses.fields(Settings):
        define = {int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}[type(field.default)]
        define(field.name, field.default, HELP[field.name])
    flags.register_validator(
        "models", lambda v: bool(v) and set(v) <= set(MODELS), f"--models: any of {', '.join(MODELS)}"
    )
    flags.register_validator(
        "seeds", lambda v: bool(v) and all(s.isdigit() for s in v), "--seeds: non-negative integers, comma-separated"
    )
    command_line.run(main)
