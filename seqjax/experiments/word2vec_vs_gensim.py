"""seqjax's word2vec and gensim's, side by side: same corpus, same settings, several seeds, one process.

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

from seqjax.experiments import word2vec as experiment
from seqjax.models import word2vec
from seqjax.models import word2vec_training as training
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
    eval_dir: str = "../shared/data/word2vec_eval"
    restrict_vocab: int = 30000


def import_gensim():
    try:
        import gensim.models
    except ImportError as e:
        raise ImportError("gensim is not installed: pip install -e '.[benchmark]' (it is not a core dependency)") from e
    return gensim.models


def scores(vectors: WordVectors, settings: Settings) -> dict:
    evaluation = experiment.evaluate(vectors, settings.eval_dir, settings.restrict_vocab)
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


def run_seqjax(model: str, seed: int, settings: Settings, prepared: experiment.Prepared) -> dict:
    config = training.TrainConfig(
        model=model, window=settings.window, negative=settings.negative, shared_negatives=settings.shared_negatives,
        sample=settings.sample, alpha=settings.alpha, min_alpha=settings.min_alpha, epochs=settings.epochs,
        batch_size=settings.batch_size, seed=seed,
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
    config = experiment.Config(corpus=settings.corpus, min_count=settings.min_count)
    prepared = experiment.prepare(config)
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
