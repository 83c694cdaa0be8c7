"""Translation (seq2seq): an encoder-decoder with or without attention on Spanish-English or Multi30k.

Data (``seqjax.data.translation``): ``spa_eng`` (``spa.txt``, Spanish -> English by default, the pairs of at most
``max_len`` tokens a side, the first ``max_pairs`` of them, split by source sentence into train / dev / test with
``dev_fraction`` / ``test_fraction`` from ``seed``) or ``multi30k`` (English -> German, its own train / val /
test_2016_flickr; ``max_len`` and ``max_pairs`` apply to train only). Vocabularies from train, ``min_count``.
The model is ``seqjax.models.seq2seq``: ``attention`` none, bahdanau or luong; any cell; ``bidirectional``.

Training: ``epochs`` epochs of full batches of ``batch_size`` pairs (shuffled per epoch from ``seed``, bucketed
by length), teacher forcing, the mean cross-entropy over the target tokens (``<eos>`` included), ``optimizer``
at a constant ``learning_rate``, the gradient clipped to a global norm of ``clip`` (0: none). The batch of step
k and its dropout key are functions of k alone, so rerunning the same command resumes exactly. After every
epoch (and after the last step) the model translates a fixed random subset of ``dev_subset`` dev pairs greedily
and its corpus BLEU (``seqjax.bleu.sacrebleu_score``: sacrebleu, 13a tokenization, on the detokenized
lower-cased output against the lower-cased reference lines; each distinct source sentence once, against all
its references, see ``evaluate``) selects the best epoch, kept in ``best/``. The
test set is touched only at the end, from the best state: BLEU of greedy decoding and of beam search
(``beam_size``, GNMT length penalty ``length_penalty``), the teacher-forced test loss, example translations and,
with attention, heat maps of the attention weights of a few test sentences.

A run's ``--workdir`` holds ``flags.json``, ``src_vocab.json``, ``tgt_vocab.json``, ``checkpoints/``,
``best/checkpoints/``, ``metrics.jsonl`` and ``tensorboard/`` (training steps), ``eval/metrics.jsonl`` and
``eval/tensorboard/`` (dev BLEU and loss after each epoch), ``figures/attention_<i>.png`` and ``results.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from seqjax import bleu, decoding, train, workdir
from seqjax.data import translation as data_lib
from seqjax.data.sentiment import epoch_batches
from seqjax.data.text import DataError
from seqjax.experiments import dev_selection
from seqjax.models import seq2seq

EXPERIMENT = "translation"
SRC_VOCAB_JSON = "src_vocab.json"
TGT_VOCAB_JSON = "tgt_vocab.json"
RESULTS_JSON = "results.json"
FIGURES = "figures"
DEFAULT_DATA = {"spa_eng": "../shared/data/spa_eng", "multi30k": "../shared/data/multi30k"}


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on; the model's part becomes ``seq2seq.Seq2SeqConfig``."""

    dataset: str = "spa_eng"
    data: str = ""  # "": DEFAULT_DATA[dataset]
    direction: str = ""  # "": the dataset's default (spa-eng, en-de)
    max_len: int = 10  # keep pairs of at most this many tokens a side (multi30k: train only); 0: all
    max_pairs: int = 30000  # then the first this many (multi30k: train only); 0: all
    dev_fraction: float = 0.1
    test_fraction: float = 0.1
    min_count: int = 2
    cell: str = "lstm"
    attention: str = "luong"
    bidirectional: bool = False
    num_layers: int = 1
    embed: int = 128
    hidden: int = 256
    attention_size: int = 0  # Bahdanau's a; 0: hidden
    dropout: float = 0.2
    embed_scale: float = 0.1
    batch_size: int = 64
    bucket: bool = True
    bucket_pool: int = 50
    pad_multiple: int = 4
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    clip: float = 5.0  # global-norm clipping threshold; 0: none
    epochs: int = 10
    max_steps: int = 0  # > 0: stop after this many updates (a quick run); 0: all epochs
    decode_len: int = 0  # tokens a translation may have (<eos> included); 0: the longest training target + 5
    beam_size: int = 5
    length_penalty: float = 0.6
    dev_subset: int = 1000  # dev pairs translated after each epoch (a fixed random subset); 0: all
    eval_batch_size: int = 256
    examples: int = 10
    heatmaps: int = 4
    log_every: int = 100
    checkpoint_every: int = 1000
    num_devices: int = 0  # split every batch over this many devices (data parallel); 0: all visible
    shard_params_over: int = 0  # with several devices: split parameters of at least this many elements; 0: none
    compute_dtype: str = "float32"  # "bfloat16": mixed precision (seqjax.precision)
    seed: int = 0


# Flags a checkpoint in the workdir depends on: a rerun may change only the others (epochs, decoding, logging).
FIXED_FLAGS = (
    "dataset", "data", "direction", "max_len", "max_pairs", "dev_fraction", "test_fraction", "min_count", "cell",
    "attention", "bidirectional", "num_layers", "embed", "hidden", "attention_size", "dropout", "embed_scale",
    "batch_size", "bucket", "bucket_pool", "optimizer", "learning_rate", "clip", "seed",
)  # fmt: skip


def data_dir(config: Config) -> str:
    return config.data or DEFAULT_DATA.get(config.dataset, "")


def load_data(config: Config) -> data_lib.TranslationData:
    """The encoded splits of ``config``'s dataset (``DataError`` naming the file and line of a bad one)."""
    splits = data_lib.load_pairs(
        config.dataset,
        data_dir(config),
        config.direction,
        config.max_len,
        config.max_pairs,
        config.seed,
        config.dev_fraction,
        config.test_fraction,
    )
    return data_lib.prepare(splits, config.min_count)


def check(config: Config, data: data_lib.TranslationData) -> None:
    """``DataError`` if ``data`` cannot serve ``config`` (call it before claiming the workdir)."""
    if len(data.train) < config.batch_size:
        raise DataError(
            f"{data_dir(config)}: {len(data.train)} training pairs, fewer than --batch_size={config.batch_size}"
        )


def model_config(config: Config, data: data_lib.TranslationData) -> seq2seq.Seq2SeqConfig:
    return seq2seq.Seq2SeqConfig(
        src_vocab_size=len(data.src_vocab),
        tgt_vocab_size=len(data.tgt_vocab),
        cell=config.cell,
        num_layers=config.num_layers,
        hidden_size=config.hidden,
        embed_size=config.embed,
        bidirectional=config.bidirectional,
        attention=config.attention,
        attention_size=config.attention_size,
        dropout=config.dropout,
        embed_scale=config.embed_scale,
    )


def make_training(config: Config, model: seq2seq.Seq2SeqConfig) -> train.Training:
    """The training step of a run (cached: runs in one process share its compilation)."""
    return dev_selection.constant_rate_training(
        seq2seq.batch_loss, model, config.optimizer, config.learning_rate, config.clip, config.compute_dtype
    )


def initial_state(config: Config, model: seq2seq.Seq2SeqConfig, training: train.Training) -> train.TrainState:
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    return training.init(seq2seq.init_params(model, init_key), train_key)


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6))
def translate(
    model: seq2seq.Seq2SeqConfig,
    params,
    src: jax.Array,
    src_lengths: jax.Array,
    max_len: int,
    beam_size: int,
    length_penalty: float,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """``(tokens [b, T], lengths [b] (<eos> included), alpha [b, T, s] or None)``: greedy when ``beam_size``
    is 1 (with the attention weights of every step), else beam search (no attention weights)."""
    step = seq2seq.decode_step(model, params)
    carry = seq2seq.start(model, params, src, src_lengths)
    bos, eos = data_lib.BOS_ID, data_lib.EOS_ID
    if beam_size == 1:
        decoded = decoding.greedy(step, carry, bos=bos, eos=eos, max_len=max_len)
        return decoded.tokens, decoded.lengths, decoded.aux
    decoded = decoding.beam_search(
        step, carry, bos=bos, eos=eos, beam_size=beam_size, max_len=max_len, length_penalty=length_penalty
    )
    return decoded.tokens, decoded.lengths, None


@functools.partial(jax.jit, static_argnums=0)
def _token_nll(model: seq2seq.Seq2SeqConfig, params, src, src_lengths, tgt_in, tgt_out, tgt_lengths) -> jax.Array:
    """The summed negative log-likelihood of each pair's real target tokens, ``[b]``, no dropout."""
    logits = seq2seq.apply(model, params, src, src_lengths, tgt_in, tgt_lengths)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_probs, tgt_out[..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(seq2seq.source_mask(tgt_lengths, tgt_out.shape[1]), nll, 0.0), axis=1)


def hypothesis_tokens(vocab, tokens: np.ndarray, length: int) -> list[str]:
    """A decoded row's tokens before its ``<eos>``."""
    ids = [int(i) for i in tokens[:length]]
    if ids and ids[-1] == data_lib.EOS_ID:
        ids = ids[:-1]
    return vocab.decode(ids)


def evaluate(
    model: seq2seq.Seq2SeqConfig,
    params,
    data: data_lib.Encoded,
    tgt_vocab,
    config: Config,
    max_len: int,
    subset: np.ndarray | None = None,
    beam_size: int = 1,
) -> dict[str, Any]:
    """Translations of the pairs ``subset`` of ``data`` (default: all), each of at most ``max_len`` tokens.

    Returns ``{"bleu", "bleu_single_reference", "sentences", "loss", "hypotheses": {index: tokens},
    "attention": {index: alpha [T, s]}}``. ``bleu``: corpus BLEU (sacrebleu, 13a) over the distinct source
    sentences (``sentences`` of them), each translated once and scored against all its references in the
    subset (spa_eng lists several translations of many sentences); ``bleu_single_reference``: every pair's
    translation against its own reference alone (the same where sources are distinct, as in Multi30k).
    ``loss``: teacher-forced, nats per target token. ``loss`` and ``attention``: greedy decoding only.
    """
    hypotheses, attention, nll, count = {}, {}, 0.0, 0
    for indices, src, src_lengths, tgt_in, tgt_out, tgt_lengths in data_lib.eval_batches(
        data, config.eval_batch_size, config.pad_multiple, subset
    ):
        n = len(indices)
        args = (jnp.asarray(src), jnp.asarray(src_lengths))
        tokens, lengths, alpha = translate(model, params, *args, max_len, beam_size, config.length_penalty)
        tokens, lengths = np.asarray(tokens), np.asarray(lengths)
        alpha = None if alpha is None else np.asarray(alpha)
        for row, i in enumerate(indices):
            hypotheses[int(i)] = hypothesis_tokens(tgt_vocab, tokens[row], int(lengths[row]))
            if alpha is not None:
                attention[int(i)] = alpha[row, : int(lengths[row]), : int(src_lengths[row])]
        if beam_size == 1:
            batch_nll = _token_nll(model, params, *args, *(jnp.asarray(a) for a in (tgt_in, tgt_out, tgt_lengths)))
            nll += float(np.sum(np.asarray(batch_nll, np.float64)[:n]))
            count += int(np.sum(tgt_lengths[:n]))
    pairs = data.pairs
    done = sorted(hypotheses)
    sources: dict[tuple[str, ...], list[int]] = {}  # the pairs of each distinct source sentence
    for i in done:
        sources.setdefault(pairs.source[i], []).append(i)
    hyps = [data_lib.detokenize(hypotheses[i]) for i in done]
    single = bleu.sacrebleu_score(hyps, [pairs.reference[i] for i in done])
    multi = bleu.sacrebleu_score(
        [data_lib.detokenize(hypotheses[group[0]]) for group in sources.values()],
        [[pairs.reference[i] for i in group] for group in sources.values()],
    )
    result = {
        "bleu": multi.score,
        "bleu_single_reference": single.score,
        "sentences": len(sources),
        "hypotheses": hypotheses,
        "attention": attention,
    }
    if count:
        result["loss"] = nll / count
    return result


def decode_len(config: Config, data: data_lib.TranslationData) -> int:
    """The most tokens a translation may have (``<eos>`` included): ``config.decode_len``, or (0) the longest
    training target plus 5."""
    return config.decode_len or int(data.train.tgt_lengths.max()) + 1 + 5


def attention_figure(
    source: list[str], target: list[str], alpha: np.ndarray, path: str | Path, title: str = ""
) -> None:
    """Saves a PNG heat map of ``alpha [len(target), len(source)]``: source tokens on x, target tokens on y."""
    fig, ax = plt.subplots(figsize=(0.5 * len(source) + 2.2, 0.4 * len(target) + 1.6))
    image = ax.imshow(alpha, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(len(source)), source, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(target)), target, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="attention weight")
    fig.tight_layout()  # seqjax.plots' conventions: PNG at 110 dpi, written atomically
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    workdir.write_atomic(path, buffer.getvalue())


def run(config: Config, out: Path, data: data_lib.TranslationData | None = None) -> dict[str, Any]:
    """Trains (or resumes) and evaluates into the claimed workdir ``out``; returns and writes ``results.json``."""
    data = data or load_data(config)
    check(config, data)
    data.src_vocab.save(out / SRC_VOCAB_JSON)
    data.tgt_vocab.save(out / TGT_VOCAB_JSON)
    max_len = decode_len(config, data)
    model = model_config(config, data)
    steps_per_epoch = len(data.train) // config.batch_size
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    training = make_training(config, model)
    state = initial_state(config, model, training)
    lengths = data_lib.batch_lengths(data.train)
    rng = np.random.default_rng([config.seed, 1])
    dev_subset = np.sort(rng.permutation(len(data.dev))[: config.dev_subset or len(data.dev)])
    shown = np.random.default_rng([config.seed, 2]).permutation(len(data.test))[: max(config.examples, config.heatmaps)]

    def batch(k: int):
        epoch, index = divmod(k, steps_per_epoch)
        order = epoch_batches(lengths, config.batch_size, config.seed, epoch, config.bucket, config.bucket_pool)
        return tuple(jnp.asarray(a) for a in data_lib.take(data.train, order[index], config.pad_multiple))

    def evaluate_dev(params) -> dict[str, float]:
        dev = evaluate(model, params, data.dev, data.tgt_vocab, config, max_len, dev_subset)
        return {"dev_bleu": dev["bleu"], "dev_loss": dev["loss"]}

    def describe(entry: dict[str, float]) -> str:
        return f"dev BLEU {entry['dev_bleu']:.2f} (greedy, {len(dev_subset)} pairs), loss {entry['dev_loss']:.4f}"

    state, history, best = dev_selection.fit_selecting_best(
        training,
        state,
        batch,
        total_steps,
        steps_per_epoch,
        out,
        evaluate_dev,
        "dev_bleu",
        describe=describe,
        **dev_selection.run_options(config),
    )
    steps = int(state.step)
    params = dev_selection.restore_best(out, state).params
    greedy = evaluate(model, params, data.test, data.tgt_vocab, config, max_len)
    beam = evaluate(model, params, data.test, data.tgt_vocab, config, max_len, beam_size=config.beam_size)
    pairs = data.test.pairs
    examples = [
        {
            "source": data_lib.detokenize(pairs.source[i]),
            "reference": pairs.reference[i],
            "greedy": data_lib.detokenize(greedy["hypotheses"][i]),
            "beam": data_lib.detokenize(beam["hypotheses"][i]),
        }
        for i in (int(i) for i in shown[: config.examples])
    ]
    figures = []
    if config.attention != "none":
        (out / FIGURES).mkdir(exist_ok=True)
        for n, i in enumerate(int(i) for i in shown[: config.heatmaps]):
            path = out / FIGURES / f"attention_{n}.png"
            source = [data.src_vocab.tokens[j] for j in data.test.src[i, : data.test.src_lengths[i]]]
            target = greedy["hypotheses"][i] + [data_lib.EOS]
            alpha = greedy["attention"][i][: len(target)]
            attention_figure(source, target[: len(alpha)], alpha, path, f"{config.attention} attention, test pair {i}")
            figures.append(str(path.relative_to(out)))
    results: dict[str, Any] = {
        "dataset": config.dataset,
        "direction": config.direction or data_lib.DIRECTIONS[config.dataset][0],
        "attention": config.attention,
        "cell": config.cell,
        "steps": steps,
        "epochs": steps / steps_per_epoch,
        "steps_per_epoch": steps_per_epoch,
        "parameters": seq2seq.num_params(state.params),
        "vocab_size": {"source": len(data.src_vocab), "target": len(data.tgt_vocab)},
        "pairs": {name: len(getattr(data, name)) for name in data_lib.SPLITS},
        "dev_subset": len(dev_subset),
        "decode_len": max_len,
        "dev_bleu": [h["dev_bleu"] for h in history],
        "best": {name: best[name] for name in ("step", "epoch", "dev_bleu", "dev_loss")},
        "test": {
            "bleu_greedy": greedy["bleu"],
            "bleu_beam": beam["bleu"],
            "bleu_greedy_single_reference": greedy["bleu_single_reference"],
            "bleu_beam_single_reference": beam["bleu_single_reference"],
            "sentences": greedy["sentences"],
            "beam_size": config.beam_size,
            "length_penalty": config.length_penalty,
            "loss": greedy["loss"],
        },
        "examples": examples,
        "figures": figures,
        "history": history,
        "train_s": history[-1]["train_s"],
    }
    workdir.write_json(out / RESULTS_JSON, results)
    print(
        f"best dev BLEU {best['dev_bleu']:.2f} (epoch {best['epoch']:.2f}); test BLEU from that state: greedy "
        f"{greedy['bleu']:.2f}, beam {config.beam_size} {beam['bleu']:.2f}",
        flush=True,
    )
    return results
