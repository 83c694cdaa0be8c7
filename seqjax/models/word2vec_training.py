"""Training word2vec: epochs of host-built examples, consumed on the device by one jitted loop per chunk.

Each epoch the host subsamples the corpus, draws the reduced windows and lays the examples out in
corpus order (``seqjax.data.word2vec_data``), cut into batches of ``batch_size`` examples. Chunks of
``chunk_batches`` batches go to the device; a jitted ``fori_loop`` runs their SGD steps, drawing the
noise words on the device, so the host is out of the loop except to hand over the next chunk
(which it builds while the device is busy: dispatch is asynchronous).

The learning rate decays linearly over the whole run, from ``alpha`` to ``min_alpha``, with the
fraction of the epochs done, measured in batches within an epoch (word2vec.c and gensim measure it
in words; the two agree up to the uneven number of examples per word).

The update runs in one of two implementations, chosen by ``update_path``: the C++ kernel of
``word2vec_native`` (``kernel="native"``; each chunk is one call, its tables updated in place, on ``threads``
threads) or the pure-JAX ``word2vec.sgd_step`` in a ``while_loop`` (``kernel="jax"``). Both draw the same noise
words and learning rates and compute the same update; they differ in the order of float sums only. With
``kernel="auto"`` (the default) the kernel runs wherever it applies (sparse SGD on the negative-sampling loss with
per-example noise words, on the CPU, one device) and can be built; if it cannot be built, one line on stderr says
why and the pure-JAX update runs.

A NaN or inf stops training (``NonFiniteUpdate``) before ``on_epoch`` sees the epoch: each update's loss
is checked inside the jitted loop, which skips the epoch's remaining updates after the first non-finite
one, and the whole tables and optimizer state once at the end of every epoch.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from seqjax import parallel
from seqjax import train as train_lib
from seqjax.data import word2vec_data as data
from seqjax.models import word2vec, word2vec_native

MODELS = ("skipgram", "cbow")
LOSSES = ("negative", "softmax")
# "sparse_sgd" is word2vec.c's rule (``word2vec.sgd_step``); the others are optax's on the dense gradient.
OPTIMIZERS = ("sparse_sgd", *train_lib.OPTIMIZERS)
# Which implementation runs the sparse SGD update: the C++ kernel, the pure-JAX loop, or the kernel where it applies.
KERNELS = ("auto", "native", "jax")
MAX_DEFAULT_THREADS = 8


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters; the defaults are gensim's (``Word2Vec``) where it has one."""

    model: str = "skipgram"
    loss: str = "negative"
    window: int = 5
    negative: int = 5
    shared_negatives: int = 0  # S > 0: one set of S noise words per batch, weighted K/S
    ns_exponent: float = 0.75
    sample: float = 1e-3
    alpha: float = 0.025
    min_alpha: float = 0.0001
    epochs: int = 5
    optimizer: str = "sparse_sgd"
    batch_size: int = 4096
    chunk_batches: int = 64
    seed: int = 0
    kernel: str = "auto"
    threads: int = 0  # the native kernel's threads; 0: the CPUs this process may use, at most 8

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {self.kernel!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        for name in ("window", "epochs", "batch_size", "chunk_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.loss == "negative" and self.negative < 1:
            raise ValueError(f"negative must be >= 1 for the negative-sampling loss, got {self.negative}")


class NonFiniteUpdate(ArithmeticError):
    """Training met a NaN or inf in epoch ``epoch`` (1-based).

    ``update`` (1-based, within the epoch) is the first update whose loss was not finite; 0 if every loss
    of the epoch was finite but a parameter or optimizer state was not at its end. A parameter made
    non-finite by an update with a finite loss shows in the loss of the next update that reads it.
    """

    def __init__(self, epoch: int, update: int):
        self.epoch, self.update = epoch, update
        where = f"update {update} of epoch {epoch} gave a non-finite loss" if update else (
            f"epoch {epoch} left a non-finite parameter (every loss finite)")  # fmt: skip
        super().__init__(where)


@dataclasses.dataclass
class EpochStats:
    """What one epoch did: in-vocabulary words, words kept by subsampling, examples, mean loss, seconds."""

    epoch: int
    vocab_words: int
    effective_words: int
    examples: int
    mean_loss: float
    seconds: float


def epoch_examples(corpus: data.Corpus, keep: np.ndarray, config: TrainConfig, rng: np.random.Generator):
    """One epoch's examples in corpus order, and the number of words kept by subsampling.

    Returns ``(arrays, effective_words)``: skip-gram ``(inputs [P], targets [P])``; CBOW
    ``(contexts [P, 2W], context_weights [P, 2W], targets [P])`` with weights 1/|C| on the slots in use.
    """
    kept = data.subsample(corpus, keep, rng)
    windows = data.reduced_windows(rng, len(kept), config.window)
    if config.model == "skipgram":
        return data.skipgram_pairs(kept, windows, config.window), len(kept)
    contexts, mask, centers = data.cbow_examples(kept, windows, config.window)
    weights = mask / mask.sum(axis=1, keepdims=True)
    return (contexts, weights.astype(np.float32), centers), len(kept)


def num_batches(examples: int, config: TrainConfig) -> int:
    """Updates in an epoch of ``examples`` examples (at least one, for the learning-rate schedule)."""
    return max(-(-examples // config.batch_size), 1)


def memory_bytes(config: TrainConfig, vocab_size: int, dim: int) -> int:
    """A lower bound on the memory, in bytes, that training with ``config`` holds at once.

    Counted: the two [V, D] float32 tables (with optax also their dense gradient and the optimizer's
    state); one chunk of ``chunk_batches x batch_size`` examples as ``chunks`` lays it out (a fixed shape,
    however small the corpus); one step's gathered rows and the updates scattered back, noise ids and
    their uniform draws, or with the softmax loss the [P, V] logits and their gradient. Not counted: the
    epoch's examples on the host and the temporaries XLA adds.
    """
    f32 = 4
    tables = 2 * vocab_size * dim * f32
    tx = dense_optimizer(config)
    if tx is not None:
        table = jax.ShapeDtypeStruct((vocab_size, dim), jnp.float32)
        state = jax.eval_shape(tx.init, word2vec.Word2VecParams(table, table))
        tables += tables + sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state))
    p = config.batch_size
    if config.model == "skipgram":
        inputs, example = p * dim, 3 * f32  # input, target, weight
    else:
        slots = 2 * config.window
        inputs, example = p * slots * dim, (2 * slots + 2) * f32  # contexts and their weights, target, weight
    step = 2 * inputs * f32  # the input rows and their updates
    if config.loss == "softmax":
        step += 2 * p * vocab_size * f32 + vocab_size * dim * f32  # logits, their gradient; the output's
    else:
        noise = config.shared_negatives or p * config.negative
        step += 2 * p * dim * f32 + noise * (2 * f32 + 2 * dim * f32)  # target rows, gradients; noise ids, draws
    return tables + config.chunk_batches * p * example + step


def chunks(arrays: tuple[np.ndarray, ...], config: TrainConfig) -> Iterator[tuple[word2vec.Batch, int, int]]:
    """Fixed-shape chunks ``(Batch with leading [chunk_batches, batch_size], valid batches, first example)``.

    The last chunk is padded with zero-weight examples; only its valid batches are run.
    """
    size = config.batch_size * config.chunk_batches
    total = len(arrays[-1])
    for start in range(0, total, size):
        stop = min(start + size, total)
        pad = size - (stop - start)
        padded = [np.concatenate([a[start:stop], np.zeros((pad, *a.shape[1:]), a.dtype)]) for a in arrays]
        weights = np.concatenate([np.ones(stop - start, np.float32), np.zeros(pad, np.float32)])
        shape = (config.chunk_batches, config.batch_size)
        padded = [a.reshape(*shape, *a.shape[1:]) for a in padded]
        if config.model == "skipgram":
            inputs, targets = padded
            batch = word2vec.Batch(inputs, targets, weights.reshape(shape))
        else:
            contexts, context_weights, targets = padded
            batch = word2vec.Batch(contexts, targets, weights.reshape(shape), context_weights)
        yield batch, -(-(stop - start) // config.batch_size), start


def dense_optimizer(config: TrainConfig) -> optax.GradientTransformation | None:
    """The optax transformation of ``config.optimizer`` at unit learning rate (None for ``sparse_sgd``).

    The step multiplies its updates by the scheduled learning rate, so every optimizer follows the
    same linear decay from ``alpha`` to ``min_alpha``.
    """
    return None if config.optimizer == "sparse_sgd" else train_lib.optimizer(config.optimizer, 1.0)


def init_opt_state(config: TrainConfig, params: word2vec.Word2VecParams):
    """``()`` for ``sparse_sgd``, else the optax optimizer's state for ``params``."""
    tx = dense_optimizer(config)
    return () if tx is None else tx.init(params)


def dense_step(tx, params, opt_state, batch, noise, learning_rate, negatives):
    """An optax step on the gradient of the summed loss with respect to the whole tables ([V, D] each)."""
    if noise is None:
        loss, grads = jax.value_and_grad(word2vec.softmax_loss)(params, batch)
    else:
        loss, grads = jax.value_and_grad(word2vec.negative_loss)(params, batch, noise, negatives)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes Python scalars with int32 step counts
        updates, opt_state = tx.update(grads, opt_state, params)
    params = jax.tree.map(lambda p, u: p + learning_rate * u, params, updates)
    return params, opt_state, loss


def native_unsupported(config: TrainConfig, mesh: Mesh | None = None) -> str:
    """Why the native kernel does not apply to ``config`` (and ``mesh``); "" where it does."""
    if config.optimizer != "sparse_sgd":
        return f"it implements --optimizer=sparse_sgd, not {config.optimizer}"
    if config.loss != "negative":
        return f"it implements --loss=negative, not {config.loss}"
    if config.shared_negatives:
        return "it draws noise words per example (--shared_negatives=0)"
    if mesh is not None and mesh.size > 1:
        return f"it runs on one device, not {mesh.size}"
    if jax.default_backend() != "cpu":
        return f"it runs on the CPU, not {jax.default_backend()}"
    if jax.config.jax_default_prng_impl != "threefry2x32":
        return f"it draws noise words as threefry2x32 keys do, not {jax.config.jax_default_prng_impl}"
    return ""


_NOTICES: set[str] = set()


def update_path(config: TrainConfig, mesh: Mesh | None = None) -> str:
    """``"native"`` or ``"jax"``: the implementation ``train`` runs the update with (the module docstring's rule).

    ``kernel="native"`` where the kernel does not apply or cannot be built is a ``ValueError`` naming --kernel;
    ``kernel="auto"`` where it cannot be built prints one line on stderr (once per reason) and gives ``"jax"``.
    """
    if config.kernel == "jax":
        return "jax"
    reason = native_unsupported(config, mesh)
    if reason:
        if config.kernel == "native":
            raise ValueError(f"--kernel=native: the native word2vec update does not apply here: {reason}")
        return "jax"
    try:
        word2vec_native.load()
    except word2vec_native.NativeUnavailable as e:
        if config.kernel == "native":
            raise ValueError(f"--kernel=native: the native word2vec update cannot be built: {e}") from None
        if str(e) not in _NOTICES:
            _NOTICES.add(str(e))
            print(
                f"word2vec: using the pure-JAX update (slower): the native kernel cannot be built: {e}", file=sys.stderr
            )
        return "jax"
    return "native"


def kernel_threads(config: TrainConfig) -> int:
    """The native kernel's threads: ``config.threads``, or with 0 the CPUs this process may use, at most
    ``MAX_DEFAULT_THREADS`` (each thread scans every update of a batch for its rows: more threads than that gain
    little on batches of a few thousand examples)."""
    if config.threads:
        return config.threads
    return min(parallel.cpu_count(), MAX_DEFAULT_THREADS)


def make_chunk_step(config: TrainConfig, noise: np.ndarray, path: str = "jax") -> Callable:
    """The jitted ``(params, opt_state, key, batch, valid, first_step, lr_start, lr_step, nonfinite)``
    ``-> (params, opt_state, loss_sum, nonfinite)``, with the update of ``path`` (``update_path``'s).

    Runs ``valid`` steps over the chunk's batches; batch i uses learning rate
    ``max(lr_start - i * lr_step, min_alpha)`` and noise drawn with ``fold_in(key, first_step + i)``.
    ``nonfinite`` (int32 scalar) is -1 or the step number ``first_step + i`` of the first update whose loss
    was not finite: no update runs after it, in this chunk or in one given that ``nonfinite``.
    """
    table = word2vec.noise_table(noise)
    tx = dense_optimizer(config)
    if config.loss == "softmax":
        shape = None
    elif config.shared_negatives > 0:
        shape = (config.shared_negatives,)
    else:
        shape = (config.batch_size, config.negative)
    learning_rate = lambda lr_start, lr_step, i: jnp.maximum(
        lr_start - i.astype(jnp.float32) * lr_step, config.min_alpha
    )

    def chunk_step(params, opt_state, key, batch, valid, first_step, lr_start, lr_step, nonfinite):
        def body(state):
            i, params, opt_state, loss_sum, nonfinite = state
            one = jax.tree.map(lambda a: a[i], batch)
            noise_ids = None
            if shape is not None:
                noise_ids = word2vec.draw_negatives(jax.random.fold_in(key, first_step + i), table, shape)
            lr = learning_rate(lr_start, lr_step, i)
            if tx is None:
                params, loss = word2vec.sgd_step(params, one, noise_ids, lr, config.negative)
            else:
                params, opt_state, loss = dense_step(tx, params, opt_state, one, noise_ids, lr, config.negative)
            nonfinite = jnp.where(jnp.isfinite(loss), nonfinite, first_step + i)
            return i + 1, params, opt_state, loss_sum + loss, nonfinite

        running = lambda state: (state[0] < valid) & (state[-1] < 0)
        start = (jnp.zeros((), jnp.int32), params, opt_state, jnp.zeros((), jnp.float32), nonfinite)
        _, params, opt_state, loss_sum, nonfinite = jax.lax.while_loop(running, body, start)
        return params, opt_state, loss_sum, nonfinite

    def native_chunk_step(params, opt_state, key, batch, valid, first_step, lr_start, lr_step, nonfinite):
        lrs = learning_rate(lr_start, lr_step, jnp.arange(config.chunk_batches, dtype=jnp.int32))
        params, loss_sum, nonfinite = word2vec_native.sgd_chunk(
            params, batch, key, table, config.negative, lrs, valid, first_step, nonfinite, kernel_threads(config)
        )
        return params, opt_state, loss_sum, nonfinite

    if path not in ("native", "jax"):
        raise ValueError(f"path must be 'native' or 'jax', got {path!r}")
    return jax.jit(native_chunk_step if path == "native" else chunk_step, donate_argnums=(0, 1))


@jax.jit
def all_finite(tree) -> jax.Array:
    """Whether every floating-point leaf of ``tree`` is free of NaN and inf (a bool scalar)."""
    leaves = [leaf for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.floating)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves])) if leaves else jnp.bool_(True)


def train(
    params: word2vec.Word2VecParams,
    corpus: data.Corpus,
    vocab: data.Vocabulary,
    config: TrainConfig,
    key: jax.Array,
    start_epoch: int = 0,
    on_epoch: Callable[[EpochStats, word2vec.Word2VecParams, Any], None] | None = None,
    opt_state: Any = None,
    mesh: Mesh | None = None,
) -> tuple[word2vec.Word2VecParams, list[EpochStats]]:
    """Epochs ``start_epoch .. config.epochs - 1`` of sparse SGD over ``corpus``; the params and per-epoch stats.

    Epoch e draws its subsampling and windows from ``SeedSequence(config.seed)``'s e-th child and its
    noise words from ``fold_in(key, step)``, so a run resumed at an epoch boundary continues exactly.
    Batch i of the n_e batches of epoch e has learning rate
    ``alpha - (alpha - min_alpha) * (e + i / n_e) / epochs``, gensim's linear decay with progress.
    ``on_epoch(stats, params, opt_state)`` is called after every epoch (to log, evaluate or checkpoint)
    whose losses, parameters and optimizer state are all finite; else ``NonFiniteUpdate`` names where.
    ``opt_state`` (the optax optimizer's, ``()`` for ``sparse_sgd``) starts from ``init_opt_state`` if None.
    With a ``mesh`` (``seqjax.parallel``) the tables and optimizer state are replicated over its devices and
    every batch is split by rows (``batch_size`` divisible by its size); ``jit`` sums the sparse updates.
    """
    if len(corpus) == 0:
        raise ValueError("the corpus has no in-vocabulary words")
    keep = data.keep_probability(vocab.counts, config.sample)
    noise = data.noise_distribution(vocab.counts, config.ns_exponent)
    chunk_step = make_chunk_step(config, noise, update_path(config, mesh))
    if opt_state is None:
        opt_state = init_opt_state(config, params)
    if mesh is not None:
        parallel.check_divisible(config.batch_size, mesh)
        params, opt_state = parallel.replicate((params, opt_state), mesh)
    seeds = np.random.SeedSequence(config.seed).spawn(config.epochs)
    span = config.alpha - config.min_alpha
    stats = []
    build = lambda epoch: epoch_examples(corpus, keep, config, np.random.default_rng(seeds[epoch]))
    # The host builds epoch e + 1's examples (NumPy, mostly without the GIL) while the device trains on epoch e's.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as host:
        upcoming = host.submit(build, start_epoch) if start_epoch < config.epochs else None
        for epoch in range(start_epoch, config.epochs):
            start = time.perf_counter()
            arrays, effective = upcoming.result()
            if epoch + 1 < config.epochs:
                upcoming = host.submit(build, epoch + 1)
            examples = len(arrays[-1])
            batches = num_batches(examples, config)
            lr_step = span / (config.epochs * batches)
            first_step = epoch * (1 << 20)  # each epoch's noise keys apart from every other's
            loss_sum, nonfinite = jnp.zeros((), jnp.float32), jnp.int32(-1)
            for i, (batch, valid, first) in enumerate(chunks(arrays, config)):
                done = first // config.batch_size
                lr_start = config.alpha - span * (epoch + done / batches) / config.epochs
                step = first_step + i * config.chunk_batches
                lrs = np.float32(lr_start), np.float32(lr_step)
                if mesh is not None:
                    batch = parallel.shard_batch(batch, mesh, axis=1)  # [chunk_batches, batch_size, ...]
                state = chunk_step(params, opt_state, key, batch, valid, step, *lrs, nonfinite)
                params, opt_state, loss, nonfinite = state
                loss_sum = loss_sum + loss
            # The one device-to-host transfer of the epoch.
            loss_sum, nonfinite, finite = jax.device_get((loss_sum, nonfinite, all_finite((params, opt_state))))
            if nonfinite >= 0 or not finite:
                update = int(nonfinite) - first_step + 1 if nonfinite >= 0 else 0
                raise NonFiniteUpdate(epoch + 1, update)
            mean_loss = float(loss_sum) / max(examples, 1)
            seconds = time.perf_counter() - start
            stats.append(EpochStats(epoch + 1, len(corpus), effective, examples, mean_loss, seconds))
            if on_epoch is not None:
                on_epoch(stats[-1], params, opt_state)
    return params, stats
