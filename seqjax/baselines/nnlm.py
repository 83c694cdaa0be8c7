"""Bengio et al. (2003)'s neural probabilistic language model, as pure JAX functions.

Each token ``w_t`` is predicted from the ``n - 1`` tokens before it (``context = n - 1``)::

    x        = [E[w_{t-n+1}], ..., E[w_{t-1}]]          E [V, m]; x [(n-1) m], the oldest token first
    a        = tanh(x H + d)                              H [(n-1) m, h], d [h]
    logits   = a U + b  (+ x W with direct connections)   U [h, V], b [V], W [(n-1) m, V]
    p(w_t | w_{t-n+1} .. w_{t-1}) = softmax(logits)

``W`` is Bengio's optional direct connection from the embeddings to the output (``direct=True``).
Dropout, when asked for, drops elements of ``x`` and of ``a`` during training (a fresh mask per element).

Every position of a token stream is a target: the first ``n - 1`` contexts are filled on the left with
``pad_id``, by convention the ``<eos>`` id, i.e. the stream is taken to start after a sentence boundary.
So a stream of N tokens has N predictions (``contexts_and_targets``, ``evaluate``).

Parameters: ``{"embedding": E, "hidden_w": H, "hidden_b": d, "out_w": U, "out_b": b}`` plus ``"direct_w": W``,
all float32. Initialisation: ``E ~ N(0, 1)``; ``H`` and ``U`` uniform in ``±1/sqrt(fan_in)``; ``d, b = 0``;
``W = 0``, so that a model with direct connections starts as the same function as one without (for one key).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from seqjax.layers import dropout
from seqjax.losses import token_nll


@dataclasses.dataclass(frozen=True)
class NNLMConfig:
    """The model's shape and regularisation.

    Attributes:
      vocab_size: V.
      context: n - 1, the number of previous tokens the model sees.
      embed_size: m, per token.
      hidden_size: h, the tanh layer's width.
      direct: Bengio's direct connections ``x W`` from the embeddings to the logits.
      dropout: the probability of dropping an element of ``x`` and of ``a`` when training.
    """

    vocab_size: int
    context: int = 4
    embed_size: int = 100
    hidden_size: int = 200
    direct: bool = False
    dropout: float = 0.0

    def __post_init__(self):
        if min(self.vocab_size, self.context, self.embed_size, self.hidden_size) < 1:
            raise ValueError(f"vocab_size, context, embed_size and hidden_size must be >= 1: {self}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def input_size(self) -> int:
        """(n - 1) m, the length of the concatenated embeddings ``x``."""
        return self.context * self.embed_size


def init_params(config: NNLMConfig, key: jax.Array) -> dict:
    """The parameters of the module docstring, float32."""
    k_embed, k_hidden, k_out = jax.random.split(key, 3)
    v, h, d = config.vocab_size, config.hidden_size, config.input_size

    def fan_in_uniform(k, shape):
        bound = 1.0 / math.sqrt(shape[0])
        return jax.random.uniform(k, shape, jnp.float32, -bound, bound)

    params = {
        "embedding": jax.random.normal(k_embed, (v, config.embed_size), jnp.float32),
        "hidden_w": fan_in_uniform(k_hidden, (d, h)),
        "hidden_b": jnp.zeros((h,), jnp.float32),
        "out_w": fan_in_uniform(k_out, (h, v)),
        "out_b": jnp.zeros((v,), jnp.float32),
    }
    if config.direct:
        params["direct_w"] = jnp.zeros((d, v), jnp.float32)
    return params


def apply(config: NNLMConfig, params: dict, contexts: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """The logits of the next token after each context.

    Args:
      config: the model.
      params: its parameters (``init_params``).
      contexts: ``[B, n-1]`` int token ids, the oldest first.
      key: dropout key; ``None`` (evaluation) applies no dropout.

    Returns:
      ``logits [B, V]`` float32.
    """
    keys = (None, None) if key is None else tuple(jax.random.split(key))
    batch = contexts.shape[0]
    x = params["embedding"][contexts].reshape(batch, config.input_size)  # [B, n-1, m] -> [B, (n-1) m]
    x = dropout(x, config.dropout, keys[0])
    pre = x @ params["hidden_w"]
    a = jnp.tanh(pre + jnp.broadcast_to(params["hidden_b"], pre.shape))  # [B, h]
    a = dropout(a, config.dropout, keys[1])
    logits = a @ params["out_w"]
    logits = logits + jnp.broadcast_to(params["out_b"], logits.shape)  # explicit: strict rank promotion
    if config.direct:
        logits = logits + x @ params["direct_w"]
    return logits


def contexts_and_targets(ids: np.ndarray, context: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Every position of a stream as a prediction.

    Args:
      ids: ``[N]`` int token ids, one stream.
      context: n - 1.
      pad_id: fills the contexts before the stream's start (the ``<eos>`` id: a sentence boundary).

    Returns:
      ``(contexts [N, n-1], targets [N])`` int32: ``targets[i] = ids[i]`` and ``contexts[i] =
      ids[i-n+1 .. i-1]``, positions before 0 being ``pad_id``.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be one stream [N], got shape {ids.shape}")
    if context < 1:
        raise ValueError(f"context must be >= 1, got {context}")
    if len(ids) == 0:
        return np.zeros((0, context), np.int32), np.zeros(0, np.int32)
    padded = np.concatenate([np.full(context, pad_id, np.int32), ids.astype(np.int32)])
    contexts = np.lib.stride_tricks.sliding_window_view(padded[:-1], context)  # [N, n-1], row i = padded[i : i+n-1]
    return np.ascontiguousarray(contexts), ids.astype(np.int32)


def batch_loss(config: NNLMConfig):
    """The ``make_training`` loss: ``(params, (contexts [N, n-1], targets [N], index [B]), key)``.

    The whole split stays on the device; ``index`` picks the batch's positions. The loss is the mean
    NLL per token of the batch.
    """

    def loss(params, batch, key):
        contexts, targets, index = batch
        logits = apply(config, params, contexts[index], key if config.dropout > 0 else None)
        nll = token_nll(logits, targets[index])
        return jnp.mean(nll), {}

    return loss


@functools.partial(jax.jit, static_argnums=0)
def _batch_sums(config: NNLMConfig, params, contexts, targets, valid):
    """The NLL summed per batch, ``[K]`` float32, over ``contexts [K, B, n-1]`` where ``valid [K, B]``."""

    def body(_, batch):
        c, t, v = batch
        return None, jnp.sum(jnp.where(v, token_nll(apply(config, params, c), t), 0.0))

    _, sums = jax.lax.scan(body, None, (contexts, targets, valid))
    return sums


def evaluate(config: NNLMConfig, params, ids: np.ndarray, pad_id: int, batch_size: int = 256) -> tuple[float, int]:
    """``(summed NLL in nats, N)`` over every one of the N tokens of the stream ``ids`` (no dropout).

    Batches of ``batch_size`` predictions (the last one padded and masked) are summed in float32 on
    the device, the per-batch sums in float64 on the host.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    contexts, targets = contexts_and_targets(ids, config.context, pad_id)
    n = len(targets)
    if n == 0:
        raise ValueError("no tokens to evaluate")
    num_batches = -(-n // batch_size)
    extra = num_batches * batch_size - n
    contexts = np.concatenate([contexts, np.full((extra, config.context), pad_id, np.int32)])
    targets = np.concatenate([targets, np.zeros(extra, np.int32)])
    valid = np.arange(num_batches * batch_size) < n
    sums = _batch_sums(
        config,
        params,
        jnp.asarray(contexts.reshape(num_batches, batch_size, config.context)),
        jnp.asarray(targets.reshape(num_batches, batch_size)),
        jnp.asarray(valid.reshape(num_batches, batch_size)),
    )
    return float(np.sum(np.asarray(sums, np.float64))), n
