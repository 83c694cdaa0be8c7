"""Train and evaluate a recurrent or a causal Transformer language model (Zaremba et al. 2014's recipe).

The training split is cut into ``batch_size`` parallel streams and read in windows of ``bptt`` steps
(``seqjax.data.lm_batches``); one epoch is every full window once, in order. The carry is handed from
window to window and reset to zero at the start of every epoch; the gradient stops at window
boundaries (``seqjax.models.lm_training``). The learning rate is ``lr * lr_decay ** max(e + 1 -
decay_epoch, 0)`` in epoch e (0-based), Zaremba's schedule. After every epoch the validation split is
evaluated from a zero state; at the end the test split too (when the corpus has one).

``model="transformer"`` trains a decoder-only causal Transformer (``seqjax.models.transformer_lm``;
``num_layers`` blocks of width ``hidden``, ``num_heads`` heads, feed-forward ``mlp_ratio * hidden``,
context ``bptt``) on the same windows, schedule, optimizer and clipping. It has no carry: every
window is read on its own in training, and evaluation reads windows of ``bptt`` tokens with stride
``eval_stride`` (``0``: ``bptt``, independent windows as in training), so a prediction sees at most
``bptt`` tokens where the LSTM's carried state has seen the whole split before it
(``seqjax.models.lm_training``). ``cell``, ``embed``, ``tie_weights``, ``init_scale``, ``cell_init`` and
``eval_bptt`` are recurrent-only and ignored. ``results.json`` records ``num_params`` for both.

A run's ``--workdir`` holds ``flags.json`` (the run's Config, from which ``load_trained`` rebuilds the
model for ``experiments/sample.py``), ``vocab.json``, ``checkpoints/``, ``metrics.jsonl``, ``eval.jsonl`` (one line per
epoch) and ``results.json``. Rerunning the same command resumes from the last checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from seqjax import parallel, plots, precision, train, workdir
from seqjax.checkpoints import Checkpointer
from seqjax.data.corpus import Corpus, load_corpus
from seqjax.data.lm_batches import num_windows, parallel_streams
from seqjax.data.text import Vocab
from seqjax.experiments.epoch_training import fit_epochs
from seqjax.models import lm, lm_metrics, lm_training, transformer_lm

VOCAB_JSON = "vocab.json"
RESULTS_JSON = "results.json"
MODELS = ("rnn", "transformer")
ModelConfig = lm.LMConfig | transformer_lm.TransformerLMConfig
CURVE_PNG = "valid_curve.png"


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on. The model's part becomes ``lm.LMConfig``."""

    corpus: str = "ptb_words"
    data: str = "../shared/data/ptb"
    valid_fraction: float = 0.1
    model: str = "rnn"  # "rnn" (any cell) or "transformer"
    cell: str = "lstm"
    num_layers: int = 2
    hidden: int = 200
    embed: int = 0  # 0: = hidden
    dropout: float = 0.0
    tie_weights: bool = False
    num_heads: int = 4  # transformer only
    mlp_ratio: int = 4  # transformer only: feed-forward size / hidden
    init_scale: float = 0.1
    cell_init: str = "uniform"
    bptt: int = 20
    batch_size: int = 20
    optimizer: str = "sgd"
    learning_rate: float = 1.0
    clipping: str = "global_norm"
    clip: float = 5.0
    epochs: int = 13
    decay_epoch: int = 4
    lr_decay: float = 0.5
    max_steps: int = 0  # > 0: stop after this many updates (a quick run); 0: all epochs
    eval_batch_size: int = 1
    eval_bptt: int = 100
    eval_stride: int = 0  # transformer only: 0 = bptt (independent windows)
    log_every: int = 100
    checkpoint_every: int = 1000
    num_devices: int = 0  # split every batch over this many devices (data parallel); 0: all visible
    shard_params_over: int = 0  # with several devices: split parameters of at least this many elements; 0: none
    compute_dtype: str = "float32"  # "bfloat16": mixed precision (seqjax.precision)
    seed: int = 0


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

# Flags that define what a checkpoint in the workdir means: a rerun may change only the others.
FIXED_FLAGS = (
    "corpus", "data", "valid_fraction", "cell", "num_layers", "hidden", "embed", "dropout", "tie_weights",
    "init_scale", "cell_init", "bptt", "batch_size", "optimizer", "learning_rate", "clipping", "clip",
    "decay_epoch", "lr_decay", "seed",
)  # fmt: skip
# Checked too when --model=transformer; a recurrent run leaves them out, so workdirs made before these
# flags existed (whose flags.json lacks them) still resume.
TRANSFORMER_FIXED_FLAGS = ("model", "num_heads", "mlp_ratio")


def fixed_flags(config: Config) -> tuple[str, ...]:
    """The flags a checkpoint of this run depends on (``workdir.claim``'s ``fixed``)."""
    return FIXED_FLAGS + (TRANSFORMER_FIXED_FLAGS if config.model == "transformer" else ())


def model_config(config: Config, vocab_size: int) -> ModelConfig:
    """The model of a run: ``lm.LMConfig`` or, for ``model="transformer"``, a ``TransformerLMConfig``."""
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; known: {', '.join(MODELS)}")
    if config.model == "transformer":
        return transformer_lm.TransformerLMConfig(
            vocab_size=vocab_size,
            context=config.bptt,
            num_layers=config.num_layers,
            d_model=config.hidden,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            dropout=config.dropout,
        )
    return lm.LMConfig(
        vocab_size=vocab_size,
        cell=config.cell,
        num_layers=config.num_layers,
        hidden_size=config.hidden,
        embed_size=config.embed or None,
        dropout=config.dropout,
        tie_weights=config.tie_weights,
        init_scale=config.init_scale,
        cell_init=config.cell_init,
    )


def learning_rate_schedule(config: Config, steps_per_epoch: int) -> optax.Schedule:
    """Zaremba's: constant for ``decay_epoch`` epochs, then times ``lr_decay`` at every epoch start."""
    return _schedule(config.learning_rate, config.decay_epoch, config.lr_decay, steps_per_epoch)


def _schedule(learning_rate: float, decay_epoch: int, lr_decay: float, steps_per_epoch: int) -> optax.Schedule:
    def schedule(step):
        decays = jnp.maximum(step // steps_per_epoch + 1 - decay_epoch, 0).astype(jnp.float32)
        return learning_rate * jnp.float32(lr_decay) ** decays

    return schedule


def make_lm_training(config: Config, model: ModelConfig, steps_per_epoch: int) -> tuple[train.Training, optax.Schedule]:
    """The jittable training step of a run (truncated BPTT with the carry in ``TrainState.model_state``;
    for the Transformer, independent windows and no model state). Cached on what the step depends on, so
    runs in one process (a resumed one, a longer one) share its compilation."""
    optimization = (config.optimizer, config.learning_rate, config.decay_epoch, config.lr_decay, config.clipping)
    compute_dtype = precision.compute_dtype(config.compute_dtype)
    return _lm_training(model, config.bptt, steps_per_epoch, *optimization, config.clip, compute_dtype)


@functools.cache
def _lm_training(
    model: ModelConfig,
    bptt: int,
    steps_per_epoch: int,
    optimizer: str,
    learning_rate: float,
    decay_epoch: int,
    lr_decay: float,
    clipping: str,
    clip: float,
    compute_dtype: jnp.dtype,
) -> tuple[train.Training, optax.Schedule]:
    schedule = _schedule(learning_rate, decay_epoch, lr_decay, steps_per_epoch)
    recurrent = isinstance(model, lm.LMConfig)
    window_loss = lm_training.window_loss if recurrent else lm_training.independent_window_loss
    training = train.make_training(
        window_loss(model, bptt),
        train.optimizer(optimizer, schedule),
        train.Clipping(clipping, clip),
        learning_rate=schedule,
        stateful=recurrent,
        compute_dtype=compute_dtype,
    )
    return training, schedule


def init_model_params(model: ModelConfig, key: jax.Array) -> dict:
    if isinstance(model, lm.LMConfig):
        return lm.init_params(model, key)
    return transformer_lm.init_params(model, key)


def num_params(params) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


def initial_state(config: Config, model: ModelConfig, training: train.Training) -> train.TrainState:
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    params = init_model_params(model, init_key)
    if isinstance(model, lm.LMConfig):
        return training.init(params, train_key, lm.init_carry(model, params, config.batch_size))
    return training.init(params, train_key)


def load_trained(run_dir: str | Path) -> tuple[ModelConfig, str, Vocab, Any, int]:
    """``(model, corpus format, vocabulary, params, step)`` from the latest checkpoint of a run's workdir."""
    run_dir = Path(run_dir)
    marker = run_dir / workdir.MARKER
    if not marker.is_file():
        raise FileNotFoundError(f"{run_dir}: no {workdir.MARKER} (expected an experiments/language_model.py workdir)")
    description = json.loads(marker.read_text())
    if description.get("experiment") != "language_model":
        raise ValueError(f"{run_dir} holds a {description.get('experiment')!r} run, not a language_model run")
    config = Config(**description["flags"])
    vocab = Vocab.load(run_dir / VOCAB_JSON)
    model = model_config(config, len(vocab))
    training, _ = make_lm_training(config, model, steps_per_epoch=1)
    checkpointer = Checkpointer(run_dir, every=1)
    try:
        state = checkpointer.restore_latest(initial_state(config, model, training))
    finally:
        checkpointer.close()
    if state is None:
        raise FileNotFoundError(f"{run_dir / 'checkpoints'}: no checkpoint to sample from")
    return model, config.corpus, vocab, state.params, int(state.step)


def evaluate_split(model: ModelConfig, params, ids, config: Config) -> dict[str, float]:
    streams = parallel_streams(ids, config.eval_batch_size)
    if isinstance(model, lm.LMConfig):
        nll, count = lm_training.evaluate(model, params, streams, config.eval_bptt)
    else:
        nll, count = lm_training.evaluate_windows(model, params, streams, config.eval_stride or config.bptt)
    return lm_metrics.summary(nll, count)


def _describe(metrics: dict[str, float], fmt: str) -> str:
    if fmt == "ptb_words":
        return f"perplexity {metrics['perplexity']:.2f}"
    return f"{metrics['bits']:.4f} bits/char ({metrics['nats']:.4f} nats)"


def draw_valid_curve(path: Path, history: list[dict[str, Any]], fmt: str, label: str) -> None:
    """Validation perplexity (words) or bits per character after each epoch."""
    key, name = ("perplexity", "validation perplexity") if fmt == "ptb_words" else ("bits", "validation bits/char")
    epochs = np.array([h["epoch"] for h in history])
    values = np.array([h["valid"][key] for h in history])
    plots.epoch_curve_figure([plots.Curve(label, epochs, values, label, "-o")], name, {}, path)


def label(config: Config) -> str:
    if config.model == "transformer":
        return f"transformer {config.num_layers} x {config.hidden}, {config.num_heads} heads"
    return f"{config.cell} {config.num_layers} x {config.hidden}"


def run(config: Config, out: Path, corpus: Corpus | None = None) -> dict[str, Any]:
    """Trains (or resumes) and evaluates; returns and writes ``results.json``."""
    corpus = corpus or load_corpus(config.corpus, config.data, config.valid_fraction)
    model = model_config(config, len(corpus.vocab))
    corpus.vocab.save(out / VOCAB_JSON)
    streams = parallel_streams(corpus.train, config.batch_size)
    steps_per_epoch = num_windows(streams, config.bptt)
    if steps_per_epoch < 1:
        raise ValueError(f"--bptt={config.bptt} leaves no full window in {streams.shape[1]} tokens per stream")
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)

    if config.model == "transformer" and not config.eval_stride <= config.bptt:
        raise ValueError(f"--eval_stride={config.eval_stride} must be at most --bptt={config.bptt}")

    training, _ = make_lm_training(config, model, steps_per_epoch)
    state = initial_state(config, model, training)
    parameter_count = num_params(state.params)
    print(f"{label(config)}: {parameter_count:,} parameters", flush=True)
    mesh = parallel.mesh_for(config.num_devices, config.batch_size)
    device_streams = jnp.asarray(streams) if mesh is None else parallel.shard_batch(streams, mesh)  # placed once

    def batch(k: int):
        window_index = k % steps_per_epoch
        return device_streams, jnp.int32(window_index), jnp.bool_(window_index == 0)

    state, history = fit_epochs(
        training,
        state,
        batch,
        total_steps,
        steps_per_epoch,
        out,
        lambda params: evaluate_split(model, params, corpus.valid, config),
        lambda valid: _describe(valid, corpus.fmt),
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        mesh=mesh,
        shard_params_over=config.shard_params_over,
    )
    results: dict[str, Any] = {
        "steps": int(state.step),
        "epochs": int(state.step) / steps_per_epoch,
        "steps_per_epoch": steps_per_epoch,
        "tokens_per_step": config.batch_size * config.bptt,
        "num_params": parameter_count,
        "valid": history[-1]["valid"],  # fit_epochs evaluates after the last step
        "history": history,
    }
    if history:
        results["train_s"] = history[-1]["train_s"]
        results["train_tokens_per_s"] = results["steps"] * results["tokens_per_step"] / results["train_s"]
    if corpus.test is not None:
        results["test"] = evaluate_split(model, state.params, corpus.test, config)
    workdir.write_json(out / RESULTS_JSON, results)
    draw_valid_curve(out / CURVE_PNG, history, corpus.fmt, label(config))
    for split in ("valid", "test"):
        if split in results:
            print(f"{split} {_describe(results[split], corpus.fmt)}", flush=True)
    return results
