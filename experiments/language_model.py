r"""Recurrent (truncated BPTT) or causal Transformer language models, Zaremba et al. (2014)'s recipe.

    python experiments/language_model.py --preset=zaremba_small --workdir=runs/ptb_small
    python experiments/language_model.py --preset=char_rnn --workdir=runs/shakespeare
    python experiments/language_model.py --preset=char_rnn --cell=gru --workdir=runs/shakespeare_gru
    python experiments/language_model.py --preset=char_rnn --model=transformer --num_layers=2 --hidden=128 \
        --num_heads=4 --mlp_ratio=2 --workdir=runs/shakespeare_transformer

A preset sets a published recipe; any flag given explicitly overrides it. The training split is cut into
--batch_size parallel streams read in windows of --bptt steps (``seqjax.data.lm_batches``); one epoch is every
full window once, in order. The carry is handed from window to window, reset at each epoch's start, and the
gradient stops at window boundaries (``seqjax.models.lm_training``). --model=transformer reads each window on
its own (no state across windows) and evaluates windows of --bptt tokens every --eval_stride. After every epoch
the validation split is evaluated from a zero state; at the end the test split too. --compute_dtype=bfloat16
trains in mixed precision. Writes results.json (perplexity or bits per character, training time, tokens/s),
valid_curve.png, eval/metrics.jsonl, metrics.jsonl, checkpoints and what experiments/sample.py needs.
"""

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import config, layers, parallel, plots, train, workdir
from seqjax import experiment as ex
from seqjax.data.corpus import Corpus, load_corpus
from seqjax.data.lm_batches import num_windows, parallel_streams
from seqjax.data.text import FORMATS, DataError, Vocab
from seqjax.models import lm, lm_metrics, lm_training, transformer_lm

MODELS = ("rnn", "transformer")
ModelConfig = lm.LMConfig | transformer_lm.TransformerLMConfig


def transformer_only(c) -> bool:
    return c.model == "transformer"


@config.declare
class Config:
    corpus: str = config.setting("ptb_words", "Corpus format.", choices=FORMATS)
    data: str = config.setting("../shared/data/ptb", "PTB directory (ptb_words, ptb_chars) or text file (chars).")
    valid_fraction: float = config.setting(
        0.1, "chars: the last fraction of the text is the validation split.", above=0, below=1
    )
    model: str = config.setting("rnn", "rnn (a recurrent cell, --cell) or transformer (decoder-only).", choices=MODELS)
    cell: str = config.cell()
    num_layers: int = config.setting(2, "Stacked recurrent layers, or Transformer blocks.", at_least=1)
    hidden: int = config.setting(200, "Hidden size of every layer (the Transformer's d_model).", at_least=1)
    proj_size: int = config.setting(
        0,
        "LSTMP (Sak et al. 2014): every LSTM layer projects its hidden state to this many features, which recur and "
        "feed the next layer and the softmax (PyTorch's proj_size); 0: none.",
        at_least=0,
    )
    embed: int = config.setting(0, "Embedding size; 0 means the hidden size.", at_least=0)
    dropout: float = config.setting(
        0.0, "Dropout probability on non-recurrent connections (1 - Zaremba's keep-prob).", at_least=0, below=1
    )
    dropout_rates: str = config.setting(
        "",
        "AWD-LSTM's separate rates, --num_layers + 1 of them, comma-separated: the embedding output (dropouti), the "
        "output of each layer below the top (dropouth), the top layer's output (dropout). Empty: --dropout on each; "
        "given, they replace it.",
        check=lambda text: parse_rates(text),  # defined below the class
    )
    dropout_mask: str = config.setting(
        "per_step",
        "--dropout's masks: per_step (fresh per element and step, Zaremba) or per_sequence (one per sequence for "
        "all its steps: variational dropout, AWD-LSTM's LockedDropout).",
        choices=layers.DROPOUT_MASKS,
    )
    weight_drop: float = config.setting(
        0.0, "DropConnect on every layer's W_hh, one mask per batch (AWD-LSTM's WeightDrop).", at_least=0, below=1
    )
    embedding_dropout: float = config.setting(
        0.0, "Drop whole word types of the embedding, one mask per batch (AWD-LSTM's dropoute).", at_least=0, below=1
    )
    tie_weights: bool = config.setting(False, "Output weights = embedding transposed.")
    num_heads: int = config.setting(
        4, "--model=transformer: attention heads (must divide --hidden).", at_least=1, fixed=transformer_only
    )
    mlp_ratio: int = config.setting(
        4, "--model=transformer: feed-forward size = mlp_ratio * hidden.", at_least=1, fixed=transformer_only
    )
    init_scale: float = config.setting(0.1, "Parameters start uniform in [-init_scale, init_scale].", above=0)
    cell_init: str = config.setting(
        "uniform", "Cell parameters: uniform like the rest, or the cells' own initialisers.", choices=lm.CELL_INITS
    )
    reset_at: str = config.setting(
        "",
        "Pack documents: the state entering each step that reads this token is zeros (e.g. '<eos>': every PTB "
        "sentence alone). Empty: one running state through the stream.",
        fixed=True,
    )
    bptt: int = config.setting(20, "Truncated-BPTT window (time steps per update).", at_least=1)
    batch_size: int = config.setting(20, "Parallel streams.", at_least=1)
    eval_batch_size: int = config.setting(
        1, "Parallel streams when evaluating (1: the whole split as one stream).", at_least=1, fixed=False
    )
    eval_bptt: int = config.setting(
        100, "Window length when evaluating (the carry flows through: speed only).", at_least=1, fixed=False
    )
    eval_stride: int = config.setting(
        0, "--model=transformer: evaluation windows of --bptt tokens start every this many (0: --bptt).",
        at_least=0, fixed=False,
    )  # fmt: skip
    optimization: config.Optimization = config.Optimization(
        optimizer="sgd", learning_rate=1.0, schedule="epoch_decay", decay_epoch=4, lr_decay=0.5, clip=5.0
    )
    epochs: config.Epochs = config.Epochs(epochs=13)
    run: config.Run = config.Run(steps_per_call=10)
    devices: config.Devices = config.Devices()

    def validate(self):
        if self.model == "transformer" and self.hidden % self.num_heads:
            raise config.ConfigError(f"--hidden={self.hidden} is not divisible by --num_heads={self.num_heads}")
        if self.model == "transformer" and self.reset_at:
            raise config.ConfigError("--reset_at needs --model=rnn (a Transformer window holds no running state)")
        rates = parse_rates(self.dropout_rates)
        recurrent_only = {  # options of the recurrent layers
            "--weight_drop": self.weight_drop, "--embedding_dropout": self.embedding_dropout, "--dropout_rates": rates,
            "--dropout_mask=per_sequence": self.dropout_mask == "per_sequence", "--proj_size": self.proj_size,
        }  # fmt: skip
        given = [name for name, value in recurrent_only.items() if value]
        if self.model == "transformer" and given:
            verb = "needs" if len(given) == 1 else "need"
            raise config.ConfigError(
                f"{', '.join(given)} {verb} --model=rnn (the Transformer LM has no recurrent layers)"
            )
        if self.model == "rnn":
            try:  # the model's own checks, before any data is read or the workdir touched
                lm.check_recurrent_options(self.cell, self.num_layers, self.hidden, self.proj_size, self.weight_drop,
                                           rates or None)  # fmt: skip
            except ValueError as e:
                raise config.ConfigError(f"--{e} (--cell={self.cell}, --num_layers={self.num_layers}, "
                                         f"--hidden={self.hidden})") from None  # fmt: skip
        if self.model == "transformer" and self.eval_stride > self.bptt:
            raise config.ConfigError(f"--eval_stride={self.eval_stride} must be at most --bptt={self.bptt}")


def parse_rates(text: str) -> tuple[float, ...]:
    """``--dropout_rates``: ``"0.4,0.25,0.4"`` -> ``(0.4, 0.25, 0.4)``, ``""`` -> ``()``; ``ValueError`` unless each
    is a number in [0, 1)."""
    try:
        rates = tuple(float(item) for item in text.split(",")) if text else ()
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None
    if not all(0 <= rate < 1 for rate in rates):
        raise ValueError(f"each rate must be in [0, 1), got {text!r}")
    return rates


PRESETS: dict[str, dict[str, Any]] = {
    # Zaremba et al. 2014, "Recurrent neural network regularization", Table 1 (PTB word level).
    "zaremba_small": dict(
        corpus="ptb_words", cell="lstm", num_layers=2, hidden=200, dropout=0.0, init_scale=0.1, bptt=20,
        batch_size=20, optimizer="sgd", learning_rate=1.0, clipping="global_norm", clip=5.0, epochs=13,
        decay_epoch=4, lr_decay=0.5,
    ),
    "zaremba_medium": dict(
        corpus="ptb_words", cell="lstm", num_layers=2, hidden=650, dropout=0.5, init_scale=0.05, bptt=35,
        batch_size=20, optimizer="sgd", learning_rate=1.0, clipping="global_norm", clip=5.0, epochs=39,
        decay_epoch=6, lr_decay=0.8,
    ),
    "zaremba_large": dict(
        corpus="ptb_words", cell="lstm", num_layers=2, hidden=1500, dropout=0.65, init_scale=0.04, bptt=35,
        batch_size=20, optimizer="sgd", learning_rate=1.0, clipping="global_norm", clip=10.0, epochs=55,
        decay_epoch=14, lr_decay=1 / 1.15,
    ),
    # A char-rnn-like character model (Karpathy 2015), sized for a 2-core CPU.
    "char_rnn": dict(
        corpus="chars", data="../shared/data/tinyshakespeare/input.txt", cell="lstm", num_layers=2, hidden=256,
        dropout=0.1, init_scale=0.08, bptt=64, batch_size=32, optimizer="adam", learning_rate=2e-3,
        clipping="global_norm", clip=5.0, epochs=10, decay_epoch=6, lr_decay=0.7,
    ),
}  # fmt: skip


def load_data(c: Config) -> Corpus:
    """The corpus, checked against the windows and streams the run reads (``DataError``)."""
    corpus = load_corpus(c.corpus, c.data, c.valid_fraction)
    if num_windows(parallel_streams(corpus.train, c.batch_size), c.bptt) < 1:
        raise DataError(f"--bptt={c.bptt} leaves no full window in {len(corpus.train) // c.batch_size} tokens a stream")
    reset_token(c, corpus.vocab)
    for name, ids in (("valid", corpus.valid), ("test", corpus.test)):
        if ids is not None and len(ids) // c.eval_batch_size < 2:
            raise DataError(f"--eval_batch_size={c.eval_batch_size} streams leave no target in {name}'s {len(ids)}")
    return corpus


def reset_token(c: Config, vocab: Vocab) -> int | None:
    """The id of ``--reset_at`` in ``vocab`` (``DataError`` if it has none), or None without it."""
    return int(vocab.encode([c.reset_at], source="--reset_at")[0]) if c.reset_at else None


def model_config(c: Config, vocab_size: int, reset_token: int | None = None) -> ModelConfig:
    """The model of a run: ``lm.LMConfig``, or for --model=transformer a ``TransformerLMConfig``. ``reset_token``:
    the id of ``--reset_at`` (``reset_token``)."""
    if c.model == "transformer":
        return transformer_lm.TransformerLMConfig(
            vocab_size=vocab_size, context=c.bptt, num_layers=c.num_layers, d_model=c.hidden, num_heads=c.num_heads,
            mlp_ratio=c.mlp_ratio, dropout=c.dropout,
        )  # fmt: skip
    return lm.LMConfig(
        vocab_size=vocab_size, cell=c.cell, num_layers=c.num_layers, hidden_size=c.hidden, proj_size=c.proj_size,
        embed_size=c.embed or None,
        dropout=c.dropout, dropout_rates=parse_rates(c.dropout_rates) or None, dropout_mask=c.dropout_mask,
        weight_drop=c.weight_drop, embedding_dropout=c.embedding_dropout, tie_weights=c.tie_weights,
        init_scale=c.init_scale, cell_init=c.cell_init, reset_token=reset_token,
    )  # fmt: skip


def evaluate_split(model: ModelConfig, params, ids, c: Config) -> dict[str, float]:
    streams = parallel_streams(ids, c.eval_batch_size)
    if isinstance(model, lm.LMConfig):
        return lm_metrics.summary(*lm_training.evaluate(model, params, streams, c.eval_bptt))
    return lm_metrics.summary(*lm_training.evaluate_windows(model, params, streams, c.eval_stride or c.bptt))


def describe(metrics: dict[str, float], fmt: str) -> str:
    if fmt == "ptb_words":
        return f"perplexity {metrics['perplexity']:.2f}"
    return f"{metrics['bits']:.4f} bits/char ({metrics['nats']:.4f} nats)"


def label(c: Config) -> str:
    if c.model == "transformer":
        return f"transformer {c.num_layers} x {c.hidden}, {c.num_heads} heads"
    return f"{c.cell} {c.num_layers} x {c.hidden}"


def trained_model(c: Config, model: ModelConfig, steps_per_epoch: int = 1) -> ex.Plan:
    """The plan's model part: initial parameters, the loss (truncated BPTT's, with the carry as model state, or
    the Transformer's independent windows); also the structure a checkpoint restores into."""
    init_key = ex.keys(c.run.seed)[0]
    if c.model == "transformer":
        params = transformer_lm.init_params(model, init_key)
        loss = ex.model_loss(lm_training.independent_window_loss, model, c.bptt)
        return ex.Plan(params, loss, batches=None, steps_per_epoch=steps_per_epoch)
    params = lm.init_params(model, init_key)
    loss = ex.model_loss(lm_training.window_loss, model, c.bptt)
    carry = lm.init_carry(model, params, c.batch_size)
    return ex.Plan(params, loss, batches=None, steps_per_epoch=steps_per_epoch, model_state=carry)


def training_step(c: Config, vocab_size: int, steps_per_epoch: int) -> tuple[train.Training, train.TrainState]:
    """The run's training step and its initial state for a vocabulary of ``vocab_size``: what benchmarks time."""
    plan = trained_model(c, model_config(c, vocab_size), steps_per_epoch)
    return ex.plan_training(c, plan)[0], ex.initial_state(c, plan)


def plan(c: Config, corpus: Corpus) -> ex.Plan:
    model = model_config(c, len(corpus.vocab), reset_token(c, corpus.vocab))
    streams = parallel_streams(corpus.train, c.batch_size)
    steps_per_epoch = num_windows(streams, c.bptt)
    mesh = ex.mesh(c)
    streams = jnp.asarray(streams) if mesh is None else parallel.shard_batch(streams, mesh)  # placed once

    def batches(k: int):
        index = k % steps_per_epoch
        return streams, jnp.int32(index), jnp.bool_(index == 0)

    def evaluate(params) -> dict[str, float]:
        return {f"valid_{k}": v for k, v in evaluate_split(model, params, corpus.valid, c).items()}

    trained = trained_model(c, model, steps_per_epoch)
    print(f"{label(c)}: {sum(int(a.size) for a in jax.tree.leaves(trained.params)):,} parameters", flush=True)
    return trained._replace(
        batches=batches,
        traceable_batches=True,
        evaluate=evaluate,
        describe=lambda m: "valid " + describe(unprefixed(m, "valid"), corpus.fmt),
        files={"vocab.json": corpus.vocab.save},
    )


def unprefixed(metrics: dict[str, Any], split: str) -> dict[str, Any]:
    return {k.removeprefix(f"{split}_"): v for k, v in metrics.items() if k.startswith(f"{split}_")}


def report(c: Config, corpus: Corpus, plan: ex.Plan, fit, out: Path) -> dict[str, Any]:
    results = ex.summary(fit, plan, tokens=c.batch_size * c.bptt)
    results["num_params"] = results["parameters"]
    results["valid"] = unprefixed(fit.history[-1], "valid")  # evaluated after the last update
    if corpus.test is not None:
        results["test"] = evaluate_split(
            model_config(c, len(corpus.vocab), reset_token(c, corpus.vocab)), fit.state.params, corpus.test, c
        )
    key, name = (
        ("perplexity", "validation perplexity") if corpus.fmt == "ptb_words" else ("bits", "validation bits/char")
    )
    epochs, values = [h["epoch"] for h in fit.history], [h[f"valid_{key}"] for h in fit.history]
    plots.epoch_curve_figure([plots.Curve(label(c), np.array(epochs), np.array(values), label(c), "-o")], name, {},
                             out / "valid_curve.png")  # fmt: skip
    for split in ("valid", "test"):
        if split in results:
            print(f"{split} {describe(results[split], corpus.fmt)}", flush=True)
    return results


def load_trained(run_dir: str | Path) -> tuple[ModelConfig, str, Vocab, Any, int]:
    """``(model, corpus format, vocabulary, params, step)`` from the latest checkpoint of a run's workdir."""
    run_dir = Path(run_dir)
    c = config.build(Config, workdir.read_record(run_dir, EXPERIMENT.name))
    vocab = Vocab.load(run_dir / "vocab.json")
    model = model_config(c, len(vocab), reset_token(c, vocab))
    state = ex.restore_latest(c, trained_model(c, model), run_dir)
    return model, c.corpus, vocab, state.params, int(state.step)


EXPERIMENT = ex.Experiment("language_model", Config, load=load_data, plan=plan, report=report, presets=PRESETS)

if __name__ == "__main__":
    ex.main(EXPERIMENT)
