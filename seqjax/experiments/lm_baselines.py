"""Language-model baselines on a corpus: Kneser-Ney n-grams and Bengio et al. (2003)'s neural n-gram model.

Both score every token of each evaluation split, the split read as ONE stream (the first token predicted
from a sentence boundary: KN's begin-of-sequence context, the NNLM's ``<eos>`` padding), and report
through ``lm_metrics.summary``, the one perplexity code path of every model.

- ``kn``: ``KneserNey.fit([train], V, order)`` (interpolated modified Kneser-Ney), ``nll([valid])``, ``nll([test])``.
- ``nnlm``: every training position is one example (its ``n - 1`` previous tokens, ``<eos>``-padded at the
  start of the stream). Epoch e visits the positions in a permutation seeded by ``(seed, e)``, in batches
  of ``batch_size``; the last ``N mod batch_size`` positions of each permutation are left out of that epoch.
  The batch of step k is thus a function of k alone, and a rerun resumes from the last checkpoint exactly.
  The loss is the batch's mean NLL; optimizer at a constant learning rate, gradients clipped to a global
  norm of ``clip``. The validation split is evaluated after every epoch (``eval.jsonl``), valid and test
  at the end.

A run's ``--workdir`` holds ``flags.json``, ``vocab.json`` and ``results.json``; the NNLM's also
``checkpoints/``, ``metrics.jsonl``, ``tensorboard/`` and ``eval.jsonl``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import parallel, train, workdir
from seqjax.baselines import nnlm
from seqjax.baselines.ngram import KneserNey
from seqjax.data.corpus import Corpus
from seqjax.data.text import EOS, DataError, Vocab
from seqjax.experiments import dev_selection
from seqjax.experiments.epoch_training import fit_epochs
from seqjax.models import lm_metrics

MODELS = ("kn", "nnlm")
VOCAB_JSON = "vocab.json"
RESULTS_JSON = "results.json"


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on; ``order`` is KN's, the rest from ``context`` on the NNLM's."""

    model: str
    corpus: str = "ptb_words"
    data: str = "../shared/data/ptb"
    order: int = 5
    context: int = 4
    embed: int = 100
    hidden: int = 200
    direct: bool = False
    dropout: float = 0.0
    batch_size: int = 256
    epochs: int = 5
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    clip: float = 5.0  # global-norm clipping threshold; 0: no clipping
    max_steps: int = 0  # > 0: stop after this many updates (a quick run); 0: all epochs
    eval_batch_size: int = 1024
    log_every: int = 100
    checkpoint_every: int = 1000
    num_devices: int = 0  # split every batch over this many devices (data parallel); 0: all visible
    shard_params_over: int = 0  # with several devices: split parameters of at least this many elements; 0: none
    compute_dtype: str = "float32"  # "bfloat16": mixed precision (seqjax.precision)
    seed: int = 0


# Flags a checkpoint in the workdir depends on: a rerun may change only the others (epochs, max_steps, ...).
FIXED_FLAGS = {
    "kn": ("model",),  # nothing to resume: a rerun recomputes everything
    "nnlm": ("model", "corpus", "data", "context", "embed", "hidden", "direct", "dropout", "batch_size", "optimizer",
             "learning_rate", "clip", "seed"),
}  # fmt: skip


def boundary_id(vocab: Vocab) -> int:
    """The id that pads the NNLM's contexts: ``<eos>`` (PTB), else the newline (plain text)."""
    for token in (EOS, "\n"):
        if token in vocab.tokens:
            return vocab.tokens.index(token)
    raise DataError(f"the vocabulary ({len(vocab)} tokens) has neither {EOS!r} nor a newline to pad contexts with")


def _splits(corpus: Corpus) -> dict[str, np.ndarray]:
    return {name: ids for name, ids in (("valid", corpus.valid), ("test", corpus.test)) if ids is not None}


def _report(out: Path, results: dict[str, Any]) -> dict[str, Any]:
    workdir.write_json(out / RESULTS_JSON, results)
    for split in ("valid", "test"):
        if split in results:
            print(f"{split} perplexity {results[split]['perplexity']:.2f}", flush=True)
    return results


def run_kn(config: Config, out: Path, corpus: Corpus) -> dict[str, Any]:
    """Fits KN on the training stream, scores valid and test as one stream each; writes ``results.json``."""
    start = time.perf_counter()
    model = KneserNey.fit([corpus.train], len(corpus.vocab), order=config.order)
    fit_s = time.perf_counter() - start
    results: dict[str, Any] = {"model": "kn", "order": config.order, "vocab_size": len(corpus.vocab)}
    start = time.perf_counter()
    for name, ids in _splits(corpus).items():
        results[name] = lm_metrics.summary(*model.nll([ids]))
    results.update(fit_s=fit_s, eval_s=time.perf_counter() - start, discounts=[list(d) for d in model.discounts])
    return _report(out, results)


def model_config(config: Config, vocab_size: int) -> nnlm.NNLMConfig:
    return nnlm.NNLMConfig(
        vocab_size=vocab_size,
        context=config.context,
        embed_size=config.embed,
        hidden_size=config.hidden,
        direct=config.direct,
        dropout=config.dropout,
    )


@functools.lru_cache(maxsize=2)
def epoch_permutation(seed: int, epoch: int, num_positions: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the training positions, ``[N]`` int32."""
    return np.random.default_rng([seed, epoch]).permutation(num_positions).astype(np.int32)


def batch_indices(step: int, num_positions: int, batch_size: int, seed: int) -> np.ndarray:
    """The training positions of step ``step``, ``[batch_size]`` int32: a function of the step alone."""
    epoch, index = divmod(step, num_positions // batch_size)
    return epoch_permutation(seed, epoch, num_positions)[index * batch_size : (index + 1) * batch_size]


def make_nnlm_training(config: Config, model: nnlm.NNLMConfig) -> train.Training:
    """The NNLM's step: the constant-rate recipe of the model-selecting experiments (cached: a resumed run in
    the same process shares its compilation)."""
    return dev_selection.constant_rate_training(
        nnlm.batch_loss, model, config.optimizer, config.learning_rate, config.clip, config.compute_dtype
    )


def run_nnlm(config: Config, out: Path, corpus: Corpus) -> dict[str, Any]:
    """Trains (or resumes) the NNLM with ``loop.fit`` and evaluates it; writes ``results.json``."""
    model = model_config(config, len(corpus.vocab))
    pad_id = boundary_id(corpus.vocab)
    contexts, targets = nnlm.contexts_and_targets(corpus.train, config.context, pad_id)
    num_positions = len(targets)
    steps_per_epoch = num_positions // config.batch_size
    if steps_per_epoch < 1:
        raise DataError(f"the training split has {num_positions} tokens, fewer than --batch_size={config.batch_size}")
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)

    training = make_nnlm_training(config, model)
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    state = training.init(nnlm.init_params(model, init_key), train_key)
    mesh = parallel.mesh_for(config.num_devices, config.batch_size)
    device_contexts, device_targets = jnp.asarray(contexts), jnp.asarray(targets)  # on the device for the run
    if mesh is not None:  # every device gathers its rows of the batch from its own copy
        device_contexts, device_targets = parallel.replicate((contexts, targets), mesh)

    def batch(k: int):
        index = batch_indices(k, num_positions, config.batch_size, config.seed)
        return device_contexts, device_targets, jnp.asarray(index)

    def evaluate(params, ids) -> dict[str, float]:
        return lm_metrics.summary(*nnlm.evaluate(model, params, ids, pad_id, config.eval_batch_size))

    state, history = fit_epochs(
        training,
        state,
        batch,
        total_steps,
        steps_per_epoch,
        out,
        lambda params: evaluate(params, corpus.valid),
        lambda valid: f"perplexity {valid['perplexity']:.2f}",
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        mesh=mesh,
        shard_params_over=config.shard_params_over,
    )
    steps = int(state.step)
    results: dict[str, Any] = {
        "model": "nnlm",
        "parameters": sum(int(leaf.size) for leaf in jax.tree.leaves(state.params)),
        "steps": steps,
        "epochs": steps / steps_per_epoch,
        "steps_per_epoch": steps_per_epoch,
        "tokens_per_step": config.batch_size,
        "history": history,
    }
    if history:
        results["train_s"] = history[-1]["train_s"]
        results["train_tokens_per_s"] = steps * config.batch_size / results["train_s"]
    for name, ids in _splits(corpus).items():
        done = name == "valid" and history and history[-1]["step"] == steps  # evaluated after the last step
        results[name] = history[-1]["valid"] if done else evaluate(state.params, ids)
    return _report(out, results)


def check(config: Config, corpus: Corpus) -> None:
    """``DataError`` if ``corpus`` cannot serve ``config`` (call it before claiming the workdir)."""
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; known: {', '.join(MODELS)}")
    if config.model == "nnlm":
        boundary_id(corpus.vocab)
        if len(corpus.train) < config.batch_size:
            raise DataError(
                f"the training split has {len(corpus.train)} tokens, fewer than --batch_size={config.batch_size}"
            )


def run(config: Config, out: Path, corpus: Corpus) -> dict[str, Any]:
    """Fits or trains ``config.model`` on ``corpus`` into the claimed workdir ``out``; returns the results."""
    check(config, corpus)
    corpus.vocab.save(out / VOCAB_JSON)
    return run_kn(config, out, corpus) if config.model == "kn" else run_nnlm(config, out, corpus)
