"""Scoring and batching for the task grid: masked cross-entropy and accuracy, MNIST-1D batches, input-gradient
profiles.

A batch holds inputs (token ids ``[b, t]`` or features ``[b, t, d]``), class targets ``[b, t]`` and a mask
``[b, t]`` of the positions that are scored. With the model's per-step readout the logits are ``[b, t, c]``;
with the flatten readout ``[b, c]``, scored as the answer at the last step::

    CE       = sum_{b,t} m_bt (-log softmax(logits_bt)[y_bt]) / sum_{b,t} m_bt
    accuracy = sum_{b,t} m_bt [argmax logits_bt = y_bt] / sum_{b,t} m_bt
    sequence accuracy = mean_b prod_{t: m_bt} [argmax logits_bt = y_bt]     (every scored answer of an example)
    accuracy at step t = mean_b [argmax logits_bt = y_bt]                   (every step, the mask aside)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import gradflow, losses
from seqjax.models import task_model


class Batch(NamedTuple):
    """Inputs ``[b, t]`` int32 token ids or ``[b, t, d]`` float32 features; targets ``[b, t]`` int32 class ids;
    mask ``[b, t]`` bool, True where an answer is scored."""

    inputs: jax.Array
    targets: jax.Array
    mask: jax.Array


def scored(logits: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(logits [b, t', c], targets [b, t'], mask [b, t'])``: the flatten readout's ``[b, c]`` is the last step's."""
    if logits.ndim == 2:
        return logits[:, None], batch.targets[:, -1:], batch.mask[:, -1:]
    return logits, batch.targets, batch.mask


def cross_entropy(logits: jax.Array, batch: Batch) -> jax.Array:
    """The masked mean cross-entropy (nats) over scored positions (module docstring; ``seqjax.losses``)."""
    return losses.masked_cross_entropy(*scored(logits, batch))


def correct(logits: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array]:
    """``(right [b, t'], mask [b, t'])``: whether each scored answer is the argmax."""
    logits, targets, mask = scored(logits, batch)
    return (jnp.argmax(logits, axis=-1) == targets) & mask, mask


def accuracy(logits: jax.Array, batch: Batch) -> jax.Array:
    """The fraction of scored answers that are right."""
    return losses.masked_accuracy(*scored(logits, batch))


def sequence_accuracy(logits: jax.Array, batch: Batch) -> jax.Array:
    """The fraction of examples whose every scored answer is right."""
    right, mask = correct(logits, batch)
    return jnp.mean(jnp.all(right | ~mask, axis=1).astype(jnp.float32))


def accuracy_at_every_step(logits: jax.Array, batch: Batch) -> jax.Array:
    """``[t]``: the fraction of examples whose answer at step t is right, every step scored, the mask aside.

    For a state-tracking batch, whose targets answer every prefix, step ``l - 1`` of a causal model's output is its
    answer to the ``l``-token string: one batch of length M gives the accuracy at every length up to M."""
    return jnp.mean((jnp.argmax(logits, axis=-1) == batch.targets).astype(jnp.float32), axis=0)


def labelled_sequences(inputs: jax.Array, labels: jax.Array) -> Batch:
    """A many-to-one batch: ``inputs [b, t, d]``, one label per example scored at the last step."""
    t = inputs.shape[1]
    targets = jnp.broadcast_to(labels[:, None], (labels.shape[0], t)).astype(jnp.int32)
    mask = jnp.broadcast_to(jnp.arange(t) == t - 1, targets.shape)
    return Batch(inputs, targets, mask)


def epoch_batch(inputs: np.ndarray, labels: np.ndarray, key: jax.Array, step: jax.Array, batch_size: int) -> Batch:
    """Batch ``step`` of a fixed dataset: epoch ``e = step // (n // batch_size)`` visits the examples in the order
    ``permutation(fold_in(key, e), n)``, ``batch_size`` at a time (the last ``n mod batch_size`` left out); a function
    of ``step`` alone, so a resumed run draws the same batches."""
    n = inputs.shape[0]
    per_epoch = n // batch_size
    epoch, within = step // per_epoch, step % per_epoch
    order = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    rows = jax.lax.dynamic_slice_in_dim(order, within * batch_size, batch_size)
    return labelled_sequences(jnp.asarray(inputs)[rows], jnp.asarray(labels)[rows])


def input_gradient_profile(config: task_model.TaskModelConfig, params: dict, batch: Batch) -> jax.Array:
    """``[t]``: the batch mean of ||dL/dx_t||, L the batch's cross-entropy, x_t the step-t features (one-hot for
    tokens). Defined for every body alike, the Transformer's included (``gradflow.input_gradients``)."""

    def loss_of_features(x):
        return cross_entropy(task_model.apply_features(config, params, x), batch)

    _, grads = gradflow.input_gradients(loss_of_features, task_model.features(config, batch.inputs))
    return gradflow.mean_over_batch(gradflow.step_norms(grads))
