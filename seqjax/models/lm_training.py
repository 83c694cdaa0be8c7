"""Truncated BPTT for the language model: the training loss over one window and the evaluation pass.

Training reads window ``k mod W`` of the parallel streams at step k (``seqjax.data.lm_batches``). The
carry enters from ``TrainState.model_state`` (the previous window's last carry, or zeros at the start
of an epoch) and is not differentiated through: the gradient is cut at every window boundary while
the state flows on. The objective is Zaremba et al.'s: the NLL summed over the window's ``bptt``
steps and averaged over the batch, so their learning rates (1.0 with SGD) carry over.

The causal Transformer (``seqjax.models.transformer_lm``) has no carry to hand on. It is trained on
the same windows with the same objective, but each window is read on its own: the prediction at
offset ``s`` of a window sees the ``s + 1`` tokens ``window[0..s]`` and nothing before the window, so
over a window of ``bptt`` tokens a prediction sees ``(bptt + 1) / 2`` tokens on average, while the
LSTM's carried state has (in principle) seen everything since the start of the epoch, its gradient
only truncated at the boundary. ``evaluate_windows`` scores a split either the same way
(``stride = context``: independent windows) or with a sliding window (``stride < context``: every
prediction after the first window sees at least ``context - stride + 1`` tokens); the recurrent
``evaluate`` carries the state through the whole split.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from seqjax.data.lm_batches import all_windows, window
from seqjax.losses import token_nll
from seqjax.models import lm, transformer_lm


def window_loss(config: lm.LMConfig, bptt: int):
    """The ``make_training(stateful=True)`` loss: ``(params, carries, (streams, index, reset), key)``.

    ``streams [B, L]`` int32 stays on the device for the whole run; ``index`` picks the window and
    ``reset`` (a bool scalar) zeroes the carries first (the start of an epoch).
    """

    def loss(params, carries, batch, key):
        streams, index, reset = batch
        carries = jax.tree.map(lambda c: jnp.where(reset, jnp.zeros_like(c), c), carries)
        inputs, targets = window(streams, index, bptt)
        logits, new_carries = lm.apply(config, params, carries, inputs, key if config.stochastic else None)
        nll = token_nll(logits, targets)  # [B, bptt]
        objective = jnp.sum(jnp.mean(nll, axis=0))
        return objective, ({"nll_per_token": jnp.mean(nll)}, jax.lax.stop_gradient(new_carries))

    return loss


@functools.partial(jax.jit, static_argnums=0)
def _scan_windows(config: lm.LMConfig, params, carries, inputs, targets):
    """``(sum of NLL, carries)`` over windows ``inputs, targets [W, B, t]``, the carry flowing through."""

    def body(carries, window_tokens):
        x, y = window_tokens
        logits, carries = lm.apply(config, params, carries, x)
        return carries, jnp.sum(token_nll(logits, y))

    carries, sums = jax.lax.scan(body, carries, (inputs, targets))
    return jnp.sum(sums), carries


def evaluate(config: lm.LMConfig, params, streams: np.ndarray, bptt: int) -> tuple[float, int]:
    """``(summed NLL in nats, number of targets)`` over every target of ``streams [B, L]``.

    The carry starts at zero and flows through the whole stream (windows of ``bptt`` steps, then
    the shorter tail), so the result does not depend on ``bptt`` beyond float rounding; every one of
    the ``B * (L - 1)`` targets is scored once.
    """
    inputs, targets, tail = all_windows(streams, bptt)
    carries = lm.init_carry(config, params, streams.shape[0])
    total = jnp.zeros((), jnp.float32)
    if len(inputs):
        total, carries = _scan_windows(config, params, carries, jnp.asarray(inputs), jnp.asarray(targets))
    if tail is not None:
        tail_inputs, tail_targets = (jnp.asarray(a)[None] for a in tail)  # one window of the tail's length
        tail_sum, carries = _scan_windows(config, params, carries, tail_inputs, tail_targets)
        total = total + tail_sum
    return float(total), streams.shape[0] * (streams.shape[1] - 1)


def independent_window_loss(config: transformer_lm.TransformerLMConfig, bptt: int):
    """The ``make_training`` (stateless) loss of the Transformer: ``(params, (streams, index, reset), key)``.

    The same windows and objective as ``window_loss`` (NLL summed over the window, averaged over
    the batch); ``reset`` is ignored, as there is no carry: each window is read on its own.
    """

    def loss(params, batch, key):
        streams, index, _ = batch
        inputs, targets = window(streams, index, bptt)
        logits = transformer_lm.apply(config, params, inputs, key if config.dropout > 0 else None)
        nll = token_nll(logits, targets)  # [B, bptt]
        return jnp.sum(jnp.mean(nll, axis=0)), {"nll_per_token": jnp.mean(nll)}

    return loss


def sliding_windows(stream: np.ndarray, context: int, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows over one stream ``[L]`` such that every one of its ``L - 1`` targets is scored exactly once.

    Window k reads inputs ``stream[k*stride : k*stride + context]`` and scores the targets one step
    later at offsets ``[0, context)`` for k = 0 and ``[context - stride, context)`` after it, so a
    scored prediction sees ``offset + 1`` tokens. The last window is padded (with token 0, unscored);
    under the causal mask the padding cannot reach a scored position.

    Returns:
      ``(inputs, targets, scored)``, each ``[K, context]`` (int, int, bool).
    """
    if not 1 <= stride <= context:
        raise ValueError(f"the evaluation stride must be in [1, context={context}], got {stride}")
    n = len(stream) - 1  # number of (input, target) pairs
    count = 1 + max(0, -(-(n - context) // stride))  # ceil((n - context) / stride) windows after the first
    offsets = np.arange(context)[None, :]
    positions = np.arange(count)[:, None] * stride + offsets  # [K, context] input positions
    valid = positions < n
    scored = valid & ((offsets >= context - stride) | (np.arange(count)[:, None] == 0))
    clipped = np.minimum(positions, n - 1)
    inputs = np.where(valid, stream[clipped], 0)
    targets = np.where(valid, stream[clipped + 1], 0)
    return inputs, targets, scored


@functools.partial(jax.jit, static_argnums=0)
def _scored_nll(config: transformer_lm.TransformerLMConfig, params, inputs, targets, scored):
    """Summed NLL of the scored targets of windows ``[K, chunk, t]``, one chunk of windows at a time."""

    def body(total, chunk):
        x, y, keep = chunk
        nll = token_nll(transformer_lm.apply(config, params, x), y)
        return total + jnp.sum(jnp.where(keep, nll, 0.0)), None

    total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), (inputs, targets, scored))
    return total


def evaluate_windows(
    config: transformer_lm.TransformerLMConfig, params, streams: np.ndarray, stride: int, chunk: int = 64
) -> tuple[float, int]:
    """``(summed NLL in nats, number of targets)`` of a causal Transformer over every target of ``streams [B, L]``.

    Each row is cut into ``sliding_windows(row, config.context, stride)``, evaluated ``chunk``
    windows at a time; every one of the ``B * (L - 1)`` targets is scored once. ``stride =
    config.context`` reads independent windows as in training; a smaller stride gives every
    prediction more context at ``context / stride`` times the cost.
    """
    parts = [sliding_windows(row, config.context, stride) for row in np.asarray(streams)]
    arrays = [np.concatenate(a) for a in zip(*parts, strict=True)]  # inputs, targets, scored: [K, context]
    pad = -len(arrays[0]) % chunk  # whole chunks: unscored all-zero windows
    arrays = [np.concatenate([a, np.zeros((pad, a.shape[1]), a.dtype)]) for a in arrays]
    inputs, targets, scored = (jnp.asarray(a.reshape(-1, chunk, config.context)) for a in arrays)  # [K/chunk, ...]
    total = _scored_nll(config, params, inputs.astype(jnp.int32), targets.astype(jnp.int32), scored)
    count = int(scored.sum())
    assert count == streams.shape[0] * (streams.shape[1] - 1), "every target is scored exactly once"
    return float(total), count
