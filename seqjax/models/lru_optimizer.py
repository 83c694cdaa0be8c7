"""The optimizer of the minimal-LRU reference code (``lru/train_helpers.py``) for a deep LRU network.

Two parameter groups, by the leaf's name:

    recurrence  the LRU's nu_log, theta_log, gamma_log, b_re, b_im (its eigenvalues, their normalisation and B):
                Adam at lr_factor * rate(k), no weight decay
    other       everything else (C, D, dense layers, norms, biases): AdamW at rate(k), decoupled weight decay
                ``weight_decay`` on every such parameter (biases and norm scales too)

with optax's defaults (b1 0.9, b2 0.999, eps 1e-8). Every update k (0-based) uses, per group with its own base,

    cosine:    rate(k) = (base - lr_min) (1 + cos(pi min(k', K) / K)) / 2 + lr_min,  k' = max(k - 1, 0)
    constant:  rate(k) = base

with K the run's updates (the reference sets each step's rate after the step, from a counter that starts at 0:
updates 0 and 1 both use the base rate, update k >= 1 the cosine of k - 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from seqjax import train

RECURRENCE = frozenset({"nu_log", "theta_log", "gamma_log", "b_re", "b_im"})
SCHEDULES = ("cosine", "constant")


def group_labels(params) -> object:
    """``params`` with each leaf replaced by its group, ``"recurrence"`` or ``"other"`` (by the leaf's dict key)."""

    def label(path, _):
        name = getattr(path[-1], "key", None)
        return "recurrence" if name in RECURRENCE else "other"

    return jax.tree_util.tree_map_with_path(label, params)


def schedule(name: str, base: float, lr_min: float, num_steps: int) -> optax.Schedule:
    """``k -> rate(k)`` (the module docstring's cosine, or constant) for ``num_steps`` updates."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")
    if name == "constant":
        return optax.constant_schedule(base)
    horizon = max(num_steps, 1)

    def rate(step):
        count = jnp.clip(jnp.asarray(step) - 1, 0, horizon).astype(jnp.float32)
        return (base - lr_min) * 0.5 * (1.0 + jnp.cos(jnp.pi * count / horizon)) + lr_min

    return rate


def optimizer(learning_rate: float, lr_factor: float, weight_decay: float, lr_min: float, num_steps: int,
              schedule_name: str = "cosine") -> train.Optimizer:  # fmt: skip
    """The two-group optimizer of the module docstring; its reported rate is the ``other`` group's."""
    rate = schedule(schedule_name, learning_rate, lr_min, num_steps)
    recurrence_rate = schedule(schedule_name, lr_factor * learning_rate, lr_min, num_steps)
    tx = optax.multi_transform(
        {
            "recurrence": optax.adam(recurrence_rate),
            "other": optax.adamw(rate, weight_decay=weight_decay),
        },
        group_labels,
    )
    return train.Optimizer(tx, rate)
