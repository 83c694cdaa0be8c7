"""word2vec (Mikolov et al. 2013): skip-gram and CBOW, with a full softmax or negative sampling.

Two tables of word vectors: ``input`` (v_w, the embeddings one keeps; word2vec.c's ``syn0``) and
``output`` (u_w, the output layer; ``syn1neg``). An example is an input vector h and a target word t:

- skip-gram: h = v_c for one context word c of the center word t (word2vec.c's order);
- CBOW: h = (1/|C|) sum_{c in C} v_c, the mean over the window C around the center t.

Losses, per example (summed over the batch):

- ``softmax``: ``-log softmax(U h)_t = -u_t.h + log sum_w exp(u_w.h)``;
- ``negative``: ``-log σ(u_t.h) - sum_{k=1..K} log σ(-u_{n_k}.h)``, the n_k drawn from the noise
  distribution (unigram^0.75); a noise word equal to the target is skipped, as in word2vec.c.

The notes' one-hot formulation, ``h = onehot(c) @ V``, is the same function as the row pick
``V[c]`` (``onehot_softmax_loss``; a test checks loss and gradients agree); the row pick is what
makes a large vocabulary affordable. Training by SGD touches only the gathered rows:
``sgd_step`` differentiates with respect to them and scatter-adds the update, never forming a
[V, D] gradient. With ``shared`` negatives, one set of S noise words serves the whole batch
(the sampled-loss trick of TensorFlow), each weighted K/S so the expected gradient is unchanged.

Dimension legend: p examples, k negatives, c context slots (2 x window), v vocabulary, d vector size.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class Word2VecParams(NamedTuple):
    """``input`` v [V, D] (the embeddings) and ``output`` u [V, D]."""

    input: Array
    output: Array


class Batch(NamedTuple):
    """A batch of examples.

    ``inputs``: skip-gram [P] ids of the input words, or CBOW [P, C] ids of the context words;
    ``context_weights``: CBOW only, [P, C] float32, 1/|C| on the context slots in use, else 0;
    ``targets``: [P] ids of the words to predict; ``weights``: [P] float32, 0 for padding.
    """

    inputs: Array
    targets: Array
    weights: Array
    context_weights: Array | None = None


def init_params(key: Array, vocab_size: int, dim: int, scale: float = 1.0) -> Word2VecParams:
    """v ~ U(-scale/D, scale/D), u = 0: gensim's start with ``scale=1``, word2vec.c's with ``scale=0.5``."""
    bound = scale / dim
    return Word2VecParams(
        input=jax.random.uniform(key, (vocab_size, dim), jnp.float32, -bound, bound),
        output=jnp.zeros((vocab_size, dim), jnp.float32),
    )


class NoiseTable(NamedTuple):
    """The noise distribution, laid out for drawing by a short search (``noise_table``).

    ``cumulative`` [V] float32 is its cumulative sum; ``guide`` [M] int32 holds, for each of M equal slices of
    [0, cumulative[-1]), how many entries of ``cumulative`` lie below the slice (less a margin for rounding); the
    answer for a point in the slice is among the next ``reach`` entries (a Python int, so the table is closed over,
    not passed to ``jit`` as an argument).
    """

    cumulative: Array
    guide: Array
    reach: int


def noise_table(noise: np.ndarray, slices_per_word: int = 8) -> NoiseTable:
    """The ``NoiseTable`` of the probabilities ``noise`` [V] (they need not sum to 1), with M = 8 V slices.

    The margin (1e-5 of a slice's bounds, against float32's 6e-8) makes every point that rounds into a slice find its
    answer there, so ``draw_negatives`` gives exactly ``searchsorted``'s ids (a test checks it).
    """
    cumulative = np.cumsum(noise).astype(np.float32)
    total, slices = float(cumulative[-1]), slices_per_word * len(cumulative)
    edges = np.arange(slices + 1, dtype=np.float64) / slices * total
    below = np.searchsorted(cumulative, edges[:-1] * (1 - 1e-5), side="right")
    upto = np.searchsorted(cumulative, edges[1:] * (1 + 1e-5), side="right")
    return NoiseTable(jnp.asarray(cumulative), jnp.asarray(below, jnp.int32), int((upto - below).max()))


def noise_ids(u: Array, noise: NoiseTable | Array) -> Array:
    """Ids int32 (``u``'s shape) of points ``u`` in [0, cumulative[-1]]: the first id whose cumulative sum exceeds u.

    ``noise`` is a ``NoiseTable`` or the distribution's cumulative sum [V]. With the cumulative sum alone this is a
    binary search (``searchsorted``, log2 V gathers per id); with a table, its slice's guide and ``reach``
    comparisons (3 gathers per id on PTB's vocabulary); the same ids either way. A point at the very top is the last id.
    """
    cumulative = noise.cumulative if isinstance(noise, NoiseTable) else noise
    vocab = cumulative.shape[0]
    if isinstance(noise, NoiseTable):
        slices = noise.guide.shape[0]
        slice_of = jnp.clip((u * (slices / cumulative[-1])).astype(jnp.int32), 0, slices - 1)
        below = noise.guide[slice_of]
        ids = below
        for j in range(noise.reach):  # the entries <= u past ``below`` are a prefix of the next ``reach``
            at = below + j
            ids = ids + ((at < vocab) & (cumulative[jnp.minimum(at, vocab - 1)] <= u)).astype(jnp.int32)
    else:
        ids = jnp.searchsorted(cumulative, u, side="right")
    return jnp.minimum(ids, vocab - 1).astype(jnp.int32)


def draw_negatives(key: Array, noise: NoiseTable | Array, shape: tuple[int, ...]) -> Array:
    """Ids drawn from the noise distribution (a ``NoiseTable`` or its cumulative sum [V]), int32 ``shape``."""
    cumulative = noise.cumulative if isinstance(noise, NoiseTable) else noise
    return noise_ids(jax.random.uniform(key, shape, cumulative.dtype) * cumulative[-1], noise)


def hidden(params: Word2VecParams, batch: Batch) -> Array:
    """h [P, D]: the input word's vector (skip-gram) or the weighted mean of the context's (CBOW)."""
    if batch.context_weights is None:
        return params.input[batch.inputs]
    return jnp.einsum("pc,pcd->pd", batch.context_weights, params.input[batch.inputs])


def negative_loss_of_rows(h: Array, target_rows: Array, noise_rows: Array, noise_weights: Array) -> Array:
    """Negative-sampling loss [P] from gathered rows.

    Args:
      h: [P, D] input vectors.
      target_rows: [P, D] u_t.
      noise_rows: [P, K, D] per-example noise vectors, or [S, D] noise vectors shared by the batch.
      noise_weights: [P, K] or [P, S]: the weight of each noise term (0 skips it).
    """
    positive = jnp.sum(h * target_rows, axis=-1)
    if noise_rows.ndim == 3:
        scores = jnp.einsum("pd,pkd->pk", h, noise_rows)
    else:
        scores = h @ noise_rows.T
    return -jax.nn.log_sigmoid(positive) - jnp.sum(noise_weights * jax.nn.log_sigmoid(-scores), axis=-1)


def softmax_loss_of_hidden(h: Array, output: Array, targets: Array) -> Array:
    """Full-softmax cross-entropy [P]: ``logsumexp(U h) - u_t.h``."""
    logits = h @ output.T  # [P, V]
    return jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]


def softmax_loss(params: Word2VecParams, batch: Batch) -> Array:
    """Summed full-softmax loss of a batch, scalar; rows picked by index."""
    return jnp.sum(batch.weights * softmax_loss_of_hidden(hidden(params, batch), params.output, batch.targets))


def onehot_softmax_loss(params: Word2VecParams, batch: Batch) -> Array:
    """The notes' formulation of ``softmax_loss`` with one-hot vectors: h = x V, scores = h U^T, x one-hot.

    Skip-gram batches only. It builds [P, V] one-hot matrices: for teaching and tests, not training.
    """
    vocab_size = params.input.shape[0]
    x = jax.nn.one_hot(batch.inputs, vocab_size, dtype=params.input.dtype)  # [P, V]
    y = jax.nn.one_hot(batch.targets, vocab_size, dtype=params.input.dtype)  # [P, V]
    h = x @ params.input
    log_probs = jax.nn.log_softmax(h @ params.output.T, axis=-1)
    return -jnp.sum(batch.weights * jnp.sum(y * log_probs, axis=-1))


def noise_weights_of(batch: Batch, noise: Array, scale: float) -> Array:
    """``scale`` for every noise word that differs from its example's target, 0 where equal (or padding)."""
    if noise.ndim == 2:  # [P, K]
        differs = noise != batch.targets[:, None]
    else:  # [S] shared
        differs = noise[None, :] != batch.targets[:, None]
    return jnp.where(differs, scale, 0.0).astype(jnp.float32) * batch.weights[:, None]


def negative_loss(params: Word2VecParams, batch: Batch, noise: Array, negatives: int) -> Array:
    """Summed negative-sampling loss, scalar; ``noise`` is [P, K] per example or [S] shared (weighted K/S)."""
    scale = 1.0 if noise.ndim == 2 else negatives / noise.shape[0]
    losses = negative_loss_of_rows(
        hidden(params, batch), params.output[batch.targets], params.output[noise], noise_weights_of(batch, noise, scale)
    )
    return jnp.sum(batch.weights * losses)


def sgd_step(
    params: Word2VecParams, batch: Batch, noise: Array | None, learning_rate: Array, negatives: int = 0
) -> tuple[Word2VecParams, Array]:
    """One sparse SGD step on the summed loss; returns the new params and the batch's summed loss.

    Only gathered rows move: the gradient is taken with respect to the rows the batch reads
    (h, u_t and the noise rows) and each row's update is scatter-added into its table, so a row
    used m times in the batch gets the sum of its m updates (word2vec.c applies them one after
    another). With ``noise=None`` the loss is the full softmax (a dense [P, V] product, for small
    vocabularies). For CBOW, every context vector moves by the full update of h, as word2vec.c
    and gensim (``cbow_mean=1``) do, not by the exact 1/|C| share of it.
    """
    h = hidden(params, batch)
    weights = batch.weights
    if noise is None:
        loss_fn = lambda h, output: jnp.sum(weights * softmax_loss_of_hidden(h, output, batch.targets))
        loss, (dh, doutput) = jax.value_and_grad(loss_fn, argnums=(0, 1))(h, params.output)
        output = params.output - learning_rate * doutput
    else:
        scale = 1.0 if noise.ndim == 2 else negatives / noise.shape[0]
        noise_weights = noise_weights_of(batch, noise, scale)
        loss_fn = lambda h, t, n: jnp.sum(weights * negative_loss_of_rows(h, t, n, noise_weights))
        loss, (dh, dtarget, dnoise) = jax.value_and_grad(loss_fn, argnums=(0, 1, 2))(
            h, params.output[batch.targets], params.output[noise]
        )
        output = params.output.at[batch.targets].add(-learning_rate * dtarget)
        output = output.at[noise].add(-learning_rate * dnoise)
    if batch.context_weights is None:
        inputs = params.input.at[batch.inputs].add(-learning_rate * dh)
    else:
        mask = (batch.context_weights > 0).astype(dh.dtype)  # [P, C]
        inputs = params.input.at[batch.inputs].add(-learning_rate * mask[:, :, None] * dh[:, None, :])
    return Word2VecParams(inputs, output), loss
