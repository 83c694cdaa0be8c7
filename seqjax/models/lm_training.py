"""Truncated BPTT for the language model: the training loss over one window and the evaluation pass.

Training reads window ``k mod W`` of the parallel streams at step k (``seqjax.data.lm_batches``). The
carry enters from ``TrainState.model_state`` (the previous window's last carry, or zeros at the start
of an epoch) and is not differentiated through: the gradient is cut at every window boundary while
the state flows on. The objective is Zaremba et al.'s: the NLL summed over the window's ``bptt``
steps and averaged over the batch, so their learning rates (1.0 with SGD) carry over.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from seqjax.data.lm_batches import all_windows, window
from seqjax.models import lm


def window_loss(config: lm.LMConfig, bptt: int):
    """The ``make_training(stateful=True)`` loss: ``(params, carries, (streams, index, reset), key)``.

    ``streams [B, L]`` int32 stays on the device for the whole run; ``index`` picks the window and
    ``reset`` (a bool scalar) zeroes the carries first (the start of an epoch).
    """

    def loss(params, carries, batch, key):
        streams, index, reset = batch
        carries = jax.tree.map(lambda c: jnp.where(reset, jnp.zeros_like(c), c), carries)
        inputs, targets = window(streams, index, bptt)
        logits, new_carries = lm.apply(config, params, carries, inputs, key if config.dropout > 0 else None)
        nll = lm.token_nll(logits, targets)  # [B, bptt]
        objective = jnp.sum(jnp.mean(nll, axis=0))
        return objective, ({"nll_per_token": jnp.mean(nll)}, jax.lax.stop_gradient(new_carries))

    return loss


@functools.partial(jax.jit, static_argnums=0)
def _scan_windows(config: lm.LMConfig, params, carries, inputs, targets):
    """``(sum of NLL, carries)`` over windows ``inputs, targets [W, B, t]``, the carry flowing through."""

    def body(carries, window_tokens):
        x, y = window_tokens
        logits, carries = lm.apply(config, params, carries, x)
        return carries, jnp.sum(lm.token_nll(logits, y))

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
