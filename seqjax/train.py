"""Training: a train state, optimizers, schedules and clipping by name, and one plain train step.

``make_training`` builds two pure functions from one configuration: ``init(params, key) -> state``
and ``step(state, batch, diagnose=True) -> (state, metrics)``. The caller jits the step, donating the
state: ``jax.jit(training.step, donate_argnums=0)``. Configuration enters by closure, never as static
arguments. Randomness for step k comes from
``jax.random.fold_in(state.key, k)``, so a run is a function of its step count, not of its history.

Every step's metrics carry the loss, the global norm of the gradients (before clipping; the norm
global-norm clipping computes anyway), whether clipping fired, the learning rate, and whether the
step was non-finite. The diagnostics that cost a pass over every parameter, the global norms of the
parameters and of the update, are computed only when ``diagnose`` is true (a bool scalar, traced:
one compiled step serves both) and are 0 otherwise; the runner asks for them on the updates it logs.
``compute_dtype=jnp.bfloat16`` trains in mixed precision (``seqjax.precision``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from seqjax import precision

OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop", "adagrad")
SCHEDULES = ("constant", "cosine", "exponential", "linear")
CLIPPING = ("none", "global_norm", "value")


def global_norm(tree) -> jax.Array:
    """sqrt of the sum of squares of every element of every leaf (the norm gradient clipping uses)."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree)))


class TrainState(NamedTuple):
    """Everything a run needs to continue: a pytree, so it can be jitted, donated and checkpointed."""

    params: Any
    opt_state: Any
    step: jax.Array  # int32 scalar: the number of updates applied so far
    key: jax.Array  # the run's root key; step k uses fold_in(key, k)
    model_state: Any = None  # state a step hands to the next one, not trained (e.g. truncated BPTT's carry)


def schedule(name: str, learning_rate: float, total_steps: int = 1, decay_rate: float = 0.1) -> optax.Schedule:
    """A learning-rate schedule by name.

    Args:
      name: ``constant``; ``cosine`` (lr * (1 + cos(pi k / K)) / 2, reaching 0 at ``total_steps`` K);
        ``exponential`` (lr * decay_rate^(k / K)); ``linear`` (lr * (1 - k / K), floored at 0).
      learning_rate: the initial rate.
      total_steps: K, the horizon of the decaying schedules.
      decay_rate: the factor ``exponential`` reaches at step K.
    """
    if name == "constant":
        return optax.constant_schedule(learning_rate)
    if name == "cosine":
        return optax.cosine_decay_schedule(learning_rate, total_steps)
    if name == "exponential":
        return optax.exponential_decay(learning_rate, total_steps, decay_rate)
    if name == "linear":
        return optax.linear_schedule(learning_rate, 0.0, total_steps)
    raise ValueError(f"unknown learning-rate schedule {name!r}; known: {', '.join(SCHEDULES)}")


class Optimizer(NamedTuple):
    """An optimizer with the learning-rate schedule it follows: an experiment's own recipe (``experiment.Plan``),
    e.g. parameter groups with their own rates; each step's metrics report ``learning_rate(step)``."""

    tx: optax.GradientTransformation
    learning_rate: optax.Schedule


def optimizer(name: str, learning_rate: optax.ScalarOrSchedule, momentum: float = 0.9) -> optax.GradientTransformation:
    """An optax optimizer by name: sgd, momentum (heavy ball, ``momentum``), adam, rmsprop, adagrad."""
    if name == "sgd":
        return optax.sgd(learning_rate)
    if name == "momentum":
        return optax.sgd(learning_rate, momentum=momentum)
    if name == "adam":
        return optax.adam(learning_rate)
    if name == "rmsprop":
        return optax.rmsprop(learning_rate)
    if name == "adagrad":
        return optax.adagrad(learning_rate)
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")


@dataclasses.dataclass(frozen=True)
class Clipping:
    """Gradient clipping, applied before the optimizer.

    ``global_norm`` (Pascanu et al. 2013, "rescale"): g <- g * min(1, threshold / ||g||), ||g|| the
    global norm over all parameters. ``value`` (char-rnn, min-char-rnn): each element clipped to
    [-threshold, threshold]. ``none``: unchanged.
    """

    mode: str = "none"
    threshold: float = 1.0

    def __post_init__(self):
        if self.mode not in CLIPPING:
            raise ValueError(f"unknown clipping {self.mode!r}; known: {', '.join(CLIPPING)}")
        if self.mode != "none" and not self.threshold > 0:
            raise ValueError(f"the clipping threshold must be positive, got {self.threshold}")

    def transform(self) -> optax.GradientTransformation:
        if self.mode == "global_norm":
            return optax.clip_by_global_norm(self.threshold)
        if self.mode == "value":
            return optax.clip(self.threshold)
        return optax.identity()

    def fires(self, grads, grad_norm: jax.Array | None = None) -> jax.Array:
        """Whether clipping changes ``grads``: a boolean scalar. ``grad_norm``: their global norm, if already taken."""
        if self.mode == "global_norm":
            return (global_norm(grads) if grad_norm is None else grad_norm) > self.threshold
        if self.mode == "value":
            return jnp.any(jnp.stack([jnp.max(jnp.abs(g)) for g in jax.tree.leaves(grads)]) > self.threshold)
        return jnp.asarray(False)


LossFn = Callable[[Any, Any, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]
StatefulLossFn = Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, tuple[dict[str, jax.Array], Any]]]


class Training(NamedTuple):
    """``init(params, key[, model_state]) -> TrainState`` and ``step(state, batch, diagnose=True) -> (state,
    metrics)``."""

    init: Callable[..., TrainState]
    step: Callable[..., tuple[TrainState, dict[str, jax.Array]]]


def make_training(
    loss_fn: LossFn | StatefulLossFn,
    tx: optax.GradientTransformation,
    clipping: Clipping = Clipping(),
    learning_rate: optax.Schedule | None = None,
    skip_nonfinite: bool = False,
    stateful: bool = False,
    compute_dtype=None,
) -> Training:
    """Builds the ``init`` and ``step`` of one training configuration.

    Args:
      loss_fn: ``(params, batch, key) -> (loss, aux)``; ``aux`` is a dict of scalars added to the
        metrics. ``key`` is this step's key, ``fold_in(state.key, state.step)``.
      tx: the optimizer; clipping is chained in front of it here.
      clipping: see ``Clipping``.
      learning_rate: the schedule ``tx`` uses, only to report the step's rate in the metrics.
      skip_nonfinite: if the loss, any gradient or any updated parameter is NaN or inf, keep the
        parameters and optimizer state, still advance ``step``, and report ``nonfinite = 1``. Otherwise such a step is
        applied and reported, and the caller decides (the loop stops on it). The gradients are judged by their
        global norm (NaN or inf if any gradient is, or if their squares overflow), the parameters by their largest
        magnitude: two reductions, one of them shared with clipping.
      stateful: ``loss_fn`` is ``(params, model_state, batch, key) -> (loss, (aux, model_state))``: it
        reads ``state.model_state`` and returns the next one (not differentiated), e.g. the
        recurrent carry that truncated BPTT hands from one window to the next. Pass the initial
        ``model_state`` to ``init``.
      compute_dtype: evaluate ``loss_fn`` on the floating parameters cast to this dtype (e.g.
        ``jnp.bfloat16``, see ``seqjax.precision``), its loss and metrics returned in float32. The
        parameters, their gradients and the optimizer state stay in the parameters' own dtype.
        None: the loss sees the parameters as they are.
    """
    chained = optax.chain(clipping.transform(), tx)
    if compute_dtype is not None:
        loss_fn = _in_precision(loss_fn, compute_dtype, stateful)

    def init(params, key: jax.Array, model_state: Any = None) -> TrainState:
        # The state is donated to the jitted step: give it its own copy of the key, so the caller's
        # key (often reused, e.g. for batches) survives. ``params`` are taken over, not copied.
        own_key = jax.random.wrap_key_data(jnp.copy(jax.random.key_data(key)), impl=jax.random.key_impl(key))
        # model_state gets its own buffers too: donation refuses leaves that share one (LSTM zero carries do).
        own_model_state = jax.tree.map(jnp.copy, model_state)
        return TrainState(params, chained.init(params), jnp.zeros((), jnp.int32), own_key, own_model_state)

    def train_step(state: TrainState, batch, diagnose=True) -> tuple[TrainState, dict[str, jax.Array]]:
        step_key = jax.random.fold_in(state.key, state.step)
        if stateful:
            (loss, (aux, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                state.params, state.model_state, batch, step_key
            )
        else:
            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, step_key)
            model_state = state.model_state
        updates, opt_state = chained.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = global_norm(grads)  # XLA merges it with global-norm clipping's identical reduction
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(_largest_magnitude(params))
        if skip_nonfinite:
            params, opt_state = jax.tree.map(
                lambda new, old: jnp.where(finite, new, old), (params, opt_state), (state.params, state.opt_state)
            )
            updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), updates)
        param_norm, update_norm = jax.lax.cond(
            diagnose,
            lambda: (global_norm(params).astype(jnp.float32), global_norm(updates).astype(jnp.float32)),
            lambda: (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)),
        )
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "param_norm": param_norm,
            "update_norm": update_norm,
            "clipped": clipping.fires(grads, grad_norm).astype(jnp.float32),
            "nonfinite": (~finite).astype(jnp.float32),
            **aux,
        }
        if learning_rate is not None:
            metrics["learning_rate"] = jnp.asarray(learning_rate(state.step), jnp.float32)
        return TrainState(params, opt_state, state.step + 1, state.key, model_state), metrics

    return Training(init, train_step)


def _largest_magnitude(tree) -> jax.Array:
    """max |x| over every element of every leaf: NaN if any element is NaN, inf if any is infinite."""
    return jnp.max(jnp.stack([jnp.max(jnp.abs(leaf), initial=0).astype(jnp.float32) for leaf in jax.tree.leaves(tree)]))


def _in_precision(loss_fn, compute_dtype, stateful: bool):
    """``loss_fn`` on params cast to ``compute_dtype``; its loss and metrics at least float32."""

    def widen(tree):
        floating = lambda a: jnp.issubdtype(a.dtype, jnp.floating)
        return jax.tree.map(lambda a: a.astype(precision.carry_dtype(a.dtype)) if floating(a) else a, tree)

    def wrapped(params, *rest):
        loss, aux = loss_fn(precision.cast_floating(params, compute_dtype), *rest)
        if stateful:
            metrics, model_state = aux
            return widen(loss), (widen(metrics), model_state)
        return widen(loss), widen(aux)

    return wrapped
