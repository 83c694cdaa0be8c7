r"""Tagging (many-to-many): POS tagging on UD English-EWT or chunking on CoNLL-2000 with a BiLSTM tagger.

    python experiments/tagging.py --workdir=runs/ewt_bilstm
    python experiments/tagging.py --cell=gru --workdir=runs/ewt_bigru
    python experiments/tagging.py --char_features=0 --workdir=runs/ewt_no_chars
    python experiments/tagging.py --dataset=conll2000 --data=../shared/data/conll2000 --workdir=runs/conll2000_bilstm

Data: UD English-EWT (``seqjax.data.conllu``; UPOS tags, scored by token accuracy) or CoNLL-2000
(``seqjax.data.conll2000``; IOB2 chunk tags, scored by chunk F1 with conlleval's rules, dev = the last
--dev_fraction of train; with --pos_feature the files' POS tags are an input). Model (``seqjax.models.tagger``):
lower-cased word embeddings and a character CNN of the original form, recurrent layers (bidirectional) or
self-attention blocks, a linear layer per token; the predicted tag is the arg-max (no CRF). After every epoch dev
and test are scored; the best-dev state (accuracy, or chunk F1) is kept and its test score, measured at that
epoch and never used for selection, is reported in results.json (chunking: with per-type scores).
"""

import functools
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from seqjax import chunk_f1, config
from seqjax import experiment as ex
from seqjax.data import batching, conll2000
from seqjax.data import conllu as data_lib
from seqjax.data.text import DataError, Vocab
from seqjax.models import tagger

DATASETS = ("ud", "conll2000")
Data = data_lib.TaggingData | conll2000.ChunkingData


def _odd(value: int) -> None:
    if value % 2 == 0:
        raise ValueError(f"must be odd, got {value}")


@config.declare
class Config:
    dataset: str = config.setting(
        "ud", "ud: POS tagging (UPOS) of CoNLL-U files; conll2000: chunking (IOB2).", choices=DATASETS
    )
    data: str = config.setting(
        "../shared/data/ud_english_ewt",
        "ud: directory of {prefix}-train.conllu, -dev.conllu, -test.conllu; conll2000: of train.txt, test.txt.",
    )
    prefix: str = config.setting("en_ewt-ud", "ud: file name prefix of the CoNLL-U files.")
    dev_fraction: float = config.setting(
        0.1, "conll2000: the last this fraction of train.txt's sentences is the dev split.", above=0, below=1
    )
    pos_feature: bool = config.setting(True, "conll2000: feed the files' POS tags (an embedding) to the tagger.")
    pos_embed: int = config.setting(25, "Size of the POS tag embedding (with --pos_feature).", at_least=1)
    stack: config.Encoder = config.Encoder(num_layers=2, hidden=128, bidirectional=True)
    embed: int = config.setting(100, "Word embedding size (lower-cased words).", at_least=1)
    char_embed: int = config.setting(30, "Character embedding size.", at_least=1)
    char_features: int = config.setting(50, "Filters of the character CNN (0: no character feature).", at_least=0)
    char_window: int = config.setting(3, "Character CNN window (odd).", at_least=1, check=_odd)
    max_word_len: int = config.setting(
        20, "Characters read per word (longer words: their first and last characters).", at_least=1
    )
    dropout: float = config.setting(
        0.33, "Dropout on the word vectors, between layers and before the output layer.", at_least=0, below=1
    )
    embed_scale: float = config.setting(0.1, "Embeddings start N(0, embed_scale^2).", above=0)
    min_count: int = config.setting(2, "Training words seen fewer times become <unk>.", at_least=1)
    batching: config.Batches = config.Batches(batch_size=32, pad_multiple=16)
    optimization: config.Optimization = config.Optimization(learning_rate=2e-3)
    epochs: config.Epochs = config.Epochs(epochs=5)
    run: config.Run = config.Run()
    devices: config.Devices = config.Devices()


def load_data(c: Config) -> Data:
    """The three splits of ``c.data``, checked (``DataError`` naming the file and line)."""
    if c.dataset == "conll2000":
        data = conll2000.load_conll2000(c.data, c.min_count, c.max_word_len, c.dev_fraction)
    else:
        data = data_lib.load_conllu(c.data, c.min_count, c.max_word_len, c.prefix)
    if len(data.train) < c.batching.batch_size:
        raise DataError(
            f"{c.data}: {len(data.train)} training sentences, fewer than --batch_size={c.batching.batch_size}"
        )
    return data


def chunking(c: Config) -> bool:
    return c.dataset == "conll2000"


def reads_pos(c: Config) -> bool:
    """Whether the tagger reads given POS tags (chunking with ``pos_feature``)."""
    return chunking(c) and c.pos_feature


def take(c: Config, split: data_lib.Encoded, indices: np.ndarray) -> tuple[np.ndarray, ...]:
    """The model's batch ``(words, chars, lengths, tags[, pos])`` of the sentences ``indices``."""
    if not chunking(c):
        return data_lib.take(split, indices, c.batching.pad_multiple)
    return conll2000.take(split, indices, c.batching.pad_multiple)[: 5 if reads_pos(c) else 4]


def eval_batches(c: Config, split: data_lib.Encoded):
    """``(indices, words, chars, lengths, tags[, pos])`` covering ``split`` (``seqjax.data.conllu.eval_batches``)."""
    if not chunking(c):
        yield from data_lib.eval_batches(split, c.batching.eval_batch_size, c.batching.pad_multiple)
        return
    for indices, *batch in conll2000.eval_batches(split, c.batching.eval_batch_size, c.batching.pad_multiple):
        yield (indices, *batch[: 5 if reads_pos(c) else 4])


def model_config(c: Config, vocabs: data_lib.Vocabularies, pos: Vocab | None = None) -> tagger.TaggerConfig:
    """The tagger of ``c``; ``pos``: the given tags' vocabulary, when ``reads_pos(c)``."""
    return tagger.TaggerConfig(
        vocab_size=len(vocabs.words),
        char_vocab_size=len(vocabs.chars),
        num_tags=len(vocabs.tags),
        **c.stack.model_fields(),
        embed_size=c.embed,
        char_embed_size=c.char_embed,
        char_features=c.char_features,
        char_window=c.char_window,
        dropout=c.dropout,
        embed_scale=c.embed_scale,
        pos_vocab_size=len(pos) if pos is not None and reads_pos(c) else 0,
        pos_embed_size=c.pos_embed,
    )


def evaluate(model, params, data: data_lib.Encoded, c: Config, tag_names: Vocab | None = None) -> dict[str, Any]:
    """``{"accuracy", "loss"}`` over every token of ``data`` (loss: mean cross-entropy in nats), no dropout.

    With ``tag_names`` (chunking: the IOB2 tag vocabulary) also the chunk scores of the arg-max tags,
    ``"precision"``, ``"recall"``, ``"f1"`` and ``"per_type"`` (``{type: seqjax.chunk_f1.Counts.scores()}``).
    """
    correct, nll = 0, 0.0
    predicted = np.zeros_like(data.tags)  # [n, L]
    for indices, words, chars, lengths, tags, *pos in eval_batches(c, data):
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


def plan(c: Config, data: Data) -> ex.Plan:
    pos = data.pos if reads_pos(c) else None
    model = model_config(c, data.vocabs, pos)
    b = c.batching
    steps_per_epoch = len(data.train) // b.batch_size
    one_batch = functools.partial(take, c, data.train)
    tag_names = data.vocabs.tags if chunking(c) else None
    scores = ("f1", "precision", "recall", "accuracy", "loss") if chunking(c) else ("accuracy", "loss")
    files = {"vocab.json": data.vocabs.words, "chars.json": data.vocabs.chars, "tags.json": data.vocabs.tags}
    if pos is not None:
        files["pos.json"] = pos

    def evaluate_splits(params) -> dict[str, float]:
        dev, test = (evaluate(model, params, split, c, tag_names) for split in (data.dev, data.test))
        return {f"{name}_{score}": split[score] for name, split in (("dev", dev), ("test", test)) for score in scores}

    def describe(m: dict[str, float]) -> str:
        if chunking(c):
            return (
                f"dev chunk F1 {m['dev_f1']:.4f} (accuracy {m['dev_accuracy']:.4f}, loss {m['dev_loss']:.4f}), "
                f"test F1 {m['test_f1']:.4f} (accuracy {m['test_accuracy']:.4f})"
            )
        return f"dev UPOS accuracy {m['dev_accuracy']:.4f} (loss {m['dev_loss']:.4f}), test {m['test_accuracy']:.4f}"

    return ex.Plan(
        params=tagger.init_params(model, ex.keys(c.run.seed)[0]),
        loss=ex.model_loss(tagger.batch_loss, model),
        batches=batching.step_batches(data.train.lengths, b.batch_size, c.run.seed, one_batch, b.bucket, b.bucket_pool),
        steps_per_epoch=steps_per_epoch,
        evaluate=evaluate_splits,
        select="dev_f1" if chunking(c) else "dev_accuracy",
        describe=describe,
        files={name: vocab.save for name, vocab in files.items()},
    )


def report(c: Config, data: Data, plan: ex.Plan, fit, out: Path) -> dict[str, Any]:
    best, history = fit.best, fit.history
    reported = (
        ("dev_f1", "test_f1", "dev_accuracy", "test_accuracy") if chunking(c) else ("dev_accuracy", "test_accuracy")
    )
    results: dict[str, Any] = {
        **ex.summary(fit, plan, sentences=c.batching.batch_size),
        "vocab_size": len(data.vocabs.words),
        "chars": len(data.vocabs.chars),
        "tags": list(data.vocabs.tags.tokens),
        "sentences": {name: len(getattr(data, name)) for name in data_lib.SPLITS},
        "tokens": {name: getattr(data, name).num_tokens for name in data_lib.SPLITS},
        **{name: [h[name] for h in history] for name in reported},
        "best": {name: best[name] for name in ("step", "epoch", *reported)},
        "final": {name: history[-1][name] for name in ("step", "epoch", *reported)},
    }
    if not chunking(c):
        print(
            f"best dev UPOS accuracy {best['dev_accuracy']:.4f} (epoch {best['epoch']:.2f}); "
            f"test accuracy at that epoch {best['test_accuracy']:.4f}",
            flush=True,
        )
        return results
    results["dataset"] = c.dataset
    results["pos_tags"] = len(data.pos) if reads_pos(c) else 0
    model = model_config(c, data.vocabs, data.pos if reads_pos(c) else None)
    best_params = ex.restore_best(c, plan, out).params  # the per-type scores of the selected model
    for name, split in (("dev", data.dev), ("test", data.test)):
        results["best"][f"{name}_per_type"] = evaluate(model, best_params, split, c, data.vocabs.tags)["per_type"]
    print(
        f"best dev chunk F1 {best['dev_f1']:.4f} (epoch {best['epoch']:.2f}); test F1 at that epoch "
        f"{best['test_f1']:.4f} (token accuracy {best['test_accuracy']:.4f})",
        flush=True,
    )
    return results


EXPERIMENT = ex.Experiment("tagging", Config, load=load_data, plan=plan, report=report)

if __name__ == "__main__":
    ex.main(EXPERIMENT)
