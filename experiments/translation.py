r"""Translation (seq2seq): an encoder-decoder with or without attention on Spanish-English or Multi30k.

    python experiments/translation.py --attention=luong --workdir=runs/spa_eng_luong
    python experiments/translation.py --attention=none --workdir=runs/spa_eng_plain
    python experiments/translation.py --attention=bahdanau --bidirectional --cell=gru --workdir=runs/spa_eng_bahdanau
    python experiments/translation.py --dataset=multi30k --max_len=30 --max_pairs=0 --workdir=runs/multi30k

Data (``seqjax.data.translation``): spa_eng (``spa.txt``, the pairs of at most --max_len tokens a side, the first
--max_pairs of them, split by source sentence into train / dev / test from --seed) or Multi30k (English ->
German, its own splits; --max_len and --max_pairs apply to train only); vocabularies from train. Model
(``seqjax.models.seq2seq``): attention none, bahdanau or luong; any cell; a bidirectional encoder. Training is
teacher-forced. After every epoch a fixed random subset of --dev_subset dev pairs is translated greedily and its
corpus BLEU (sacrebleu, 13a, lower-cased; each distinct source once, against all its references) selects the
best state. The test set is touched only at the end, from that state: BLEU of greedy decoding and of beam search,
the teacher-forced loss, example translations and attention heat maps (figures/), all in results.json.
"""

import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import bleu, config, decoding, losses, plots
from seqjax import experiment as ex
from seqjax.attention.masks import length_mask
from seqjax.data import batching
from seqjax.data import translation as data_lib
from seqjax.data.text import DataError
from seqjax.models import seq2seq

DEFAULT_DATA = {"spa_eng": "../shared/data/spa_eng", "multi30k": "../shared/data/multi30k"}
FIGURES = "figures"


@config.declare
class Config:
    dataset: str = config.setting("spa_eng", "Dataset.", choices=data_lib.DATASETS)
    data: str = config.setting(
        "",
        "Directory of the dataset (spa.txt; or Multi30k's train/val/test_2016_flickr.{en,de}); "
        "default ../shared/data/<dataset>.",
        derive=lambda c: DEFAULT_DATA[c.dataset],
    )
    direction: str = config.setting(
        "",
        "source-target: spa-eng or eng-spa (spa_eng), en-de or de-en (multi30k); default the first.",
        derive=lambda c: data_lib.DIRECTIONS[c.dataset][0],
    )
    max_len: int = config.setting(
        10, "Keep the pairs with at most this many tokens a side (multi30k: training pairs only); 0: all.", at_least=0
    )
    max_pairs: int = config.setting(
        30000, "Then keep the first this many pairs (multi30k: training pairs only); 0: all.", at_least=0
    )
    dev_fraction: float = config.setting(
        0.1, "spa_eng: the fraction of distinct source sentences held out for dev.", above=0, below=1
    )
    test_fraction: float = config.setting(
        0.1, "spa_eng: the fraction of distinct source sentences held out for test.", above=0, below=1
    )
    min_count: int = config.setting(2, "Training tokens seen fewer times become <unk> (per side).", at_least=1)
    cell: str = config.cell()
    attention: str = config.setting("luong", "Attention.", choices=seq2seq.ATTENTIONS)
    bidirectional: bool = config.setting(False, "A bidirectional encoder (its final states bridged into the decoder).")
    num_layers: int = config.setting(1, "Recurrent layers in the encoder and in the decoder.", at_least=1)
    embed: int = config.setting(128, "Embedding size (both sides).", at_least=1)
    hidden: int = config.setting(256, "Hidden size of every layer (per direction).", at_least=1)
    attention_size: int = config.setting(0, "Bahdanau's attention size (0: --hidden).", at_least=0)
    dropout: float = config.setting(
        0.2, "Dropout on the embeddings, between encoder layers and before the output layer.", at_least=0, below=1
    )
    embed_scale: float = config.setting(0.1, "Embeddings start N(0, embed_scale^2).", above=0)
    batching: config.Batches = config.Batches(batch_size=64, pad_multiple=4)
    decode_len: int = config.setting(
        0,
        "The most tokens of a translation, <eos> included (0: the longest training target + 5).",
        at_least=0,
        fixed=False,
    )
    beam_size: int = config.setting(
        5, "Beams of the beam search of the final test evaluation.", at_least=1, fixed=False
    )
    length_penalty: float = config.setting(
        0.6, "GNMT length penalty alpha of the beam search (0: none).", at_least=0, fixed=False
    )
    dev_subset: int = config.setting(
        1000,
        "Dev pairs translated after each epoch for model selection (a fixed random subset; 0: all).",
        at_least=0,
        fixed=False,
    )
    examples: int = config.setting(10, "Test translations shown in results.json.", at_least=0, fixed=False)
    heatmaps: int = config.setting(
        4, "Attention heat maps of test sentences written to figures/ (with attention).", at_least=0, fixed=False
    )
    optimization: config.Optimization = config.Optimization()
    epochs: config.Epochs = config.Epochs(epochs=10)
    run: config.Run = config.Run(seed=0)
    devices: config.Devices = config.Devices()

    def validate(self):
        known = data_lib.DIRECTIONS[self.dataset]
        if self.direction not in known:
            raise config.ConfigError(f"--direction must be one of {', '.join(known)} for --dataset={self.dataset}")
        if self.dev_fraction + self.test_fraction >= 1:
            raise config.ConfigError("--dev_fraction and --test_fraction must have a sum below 1")


def load_data(c: Config) -> data_lib.TranslationData:
    """The encoded splits (``DataError`` naming the file and line of a bad one)."""
    splits = data_lib.load_pairs(
        c.dataset, c.data, c.direction, c.max_len, c.max_pairs, c.run.seed, c.dev_fraction, c.test_fraction
    )
    data = data_lib.prepare(splits, c.min_count)
    if len(data.train) < c.batching.batch_size:
        raise DataError(f"{c.data}: {len(data.train)} training pairs, fewer than --batch_size={c.batching.batch_size}")
    return data


def model_config(c: Config, data: data_lib.TranslationData) -> seq2seq.Seq2SeqConfig:
    return seq2seq.Seq2SeqConfig(
        src_vocab_size=len(data.src_vocab),
        tgt_vocab_size=len(data.tgt_vocab),
        cell=c.cell,
        num_layers=c.num_layers,
        hidden_size=c.hidden,
        embed_size=c.embed,
        bidirectional=c.bidirectional,
        attention=c.attention,
        attention_size=c.attention_size,
        dropout=c.dropout,
        embed_scale=c.embed_scale,
    )


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
    nll = losses.token_nll(logits, tgt_out)
    return jnp.sum(jnp.where(length_mask(tgt_lengths, tgt_out.shape[1]), nll, 0.0), axis=1)


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
    c: Config,
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
        data, c.batching.eval_batch_size, c.batching.pad_multiple, subset
    ):
        n = len(indices)
        args = (jnp.asarray(src), jnp.asarray(src_lengths))
        tokens, lengths, alpha = translate(model, params, *args, max_len, beam_size, c.length_penalty)
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


def decode_len(c: Config, data: data_lib.TranslationData) -> int:
    """The most tokens a translation may have (``<eos>`` included): ``c.decode_len``, or (0) the longest
    training target plus 5."""
    return c.decode_len or int(data.train.tgt_lengths.max()) + 1 + 5


def dev_subset(c: Config, data: data_lib.TranslationData) -> np.ndarray:
    """The dev pairs translated after every epoch: a fixed random subset of --dev_subset, sorted."""
    rng = np.random.default_rng([c.run.seed, 1])
    return np.sort(rng.permutation(len(data.dev))[: c.dev_subset or len(data.dev)])


def plan(c: Config, data: data_lib.TranslationData) -> ex.Plan:
    model, max_len, subset = model_config(c, data), decode_len(c, data), dev_subset(c, data)
    b = c.batching
    take = functools.partial(data_lib.take, data.train, pad_multiple=b.pad_multiple)
    lengths = data_lib.batch_lengths(data.train)

    def evaluate_dev(params) -> dict[str, float]:
        dev = evaluate(model, params, data.dev, data.tgt_vocab, c, max_len, subset)
        return {"dev_bleu": dev["bleu"], "dev_loss": dev["loss"]}

    return ex.Plan(
        params=seq2seq.init_params(model, ex.keys(c.run.seed)[0]),
        loss=ex.model_loss(seq2seq.batch_loss, model),
        batches=batching.step_batches(lengths, b.batch_size, c.run.seed, take, b.bucket, b.bucket_pool),
        steps_per_epoch=len(data.train) // b.batch_size,
        evaluate=evaluate_dev,
        select="dev_bleu",
        describe=lambda m: f"dev BLEU {m['dev_bleu']:.2f} (greedy, {len(subset)} pairs), loss {m['dev_loss']:.4f}",
        files={"src_vocab.json": data.src_vocab.save, "tgt_vocab.json": data.tgt_vocab.save},
    )


def report(c: Config, data: data_lib.TranslationData, plan: ex.Plan, fit, out: Path) -> dict[str, Any]:
    model, max_len, best = model_config(c, data), decode_len(c, data), fit.best
    params = ex.restore_best(c, plan, out).params
    greedy = evaluate(model, params, data.test, data.tgt_vocab, c, max_len)
    beam = evaluate(model, params, data.test, data.tgt_vocab, c, max_len, beam_size=c.beam_size)
    shown = np.random.default_rng([c.run.seed, 2]).permutation(len(data.test))[: max(c.examples, c.heatmaps)]
    pairs = data.test.pairs
    examples = [
        {
            "source": data_lib.detokenize(pairs.source[i]),
            "reference": pairs.reference[i],
            "greedy": data_lib.detokenize(greedy["hypotheses"][i]),
            "beam": data_lib.detokenize(beam["hypotheses"][i]),
        }
        for i in (int(i) for i in shown[: c.examples])
    ]
    figures = []
    if c.attention != "none":
        (out / FIGURES).mkdir(exist_ok=True)
        for n, i in enumerate(int(i) for i in shown[: c.heatmaps]):
            path = out / FIGURES / f"attention_{n}.png"
            source = [data.src_vocab.tokens[j] for j in data.test.src[i, : data.test.src_lengths[i]]]
            target = greedy["hypotheses"][i] + [data_lib.EOS]
            alpha = greedy["attention"][i][: len(target)]
            plots.attention_figure(source, target[: len(alpha)], alpha, path, f"{c.attention} attention, test pair {i}")
            figures.append(str(path.relative_to(out)))
    print(
        f"best dev BLEU {best['dev_bleu']:.2f} (epoch {best['epoch']:.2f}); test BLEU from that state: greedy "
        f"{greedy['bleu']:.2f}, beam {c.beam_size} {beam['bleu']:.2f}",
        flush=True,
    )
    return {
        **ex.summary(fit, plan),
        "dataset": c.dataset,
        "direction": c.direction,
        "attention": c.attention,
        "cell": c.cell,
        "vocab_size": {"source": len(data.src_vocab), "target": len(data.tgt_vocab)},
        "pairs": {name: len(getattr(data, name)) for name in data_lib.SPLITS},
        "dev_subset": len(dev_subset(c, data)),
        "decode_len": max_len,
        "dev_bleu": [h["dev_bleu"] for h in fit.history],
        "best": {name: best[name] for name in ("step", "epoch", "dev_bleu", "dev_loss")},
        "test": {
            "bleu_greedy": greedy["bleu"],
            "bleu_beam": beam["bleu"],
            "bleu_greedy_single_reference": greedy["bleu_single_reference"],
            "bleu_beam_single_reference": beam["bleu_single_reference"],
            "sentences": greedy["sentences"],
            "beam_size": c.beam_size,
            "length_penalty": c.length_penalty,
            "loss": greedy["loss"],
        },
        "examples": examples,
        "figures": figures,
    }


EXPERIMENT = ex.Experiment("translation", Config, load=load_data, plan=plan, report=report)

if __name__ == "__main__":
    ex.main(EXPERIMENT)
