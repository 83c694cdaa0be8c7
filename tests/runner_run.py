"""A tiny LSTM training run through seqjax.runner.fit, for the kill-and-resume tests (run as a script).

    python tests/runner_run.py WORKDIR NUM_STEPS KILL_AT [evaluate]

Saves the final parameters to WORKDIR/final.npz. KILL_AT > 0: SIGKILLs itself after that update, or, with
``evaluate``, while evaluating that update. ``evaluate``: the loss on a fixed batch is evaluated at updates 0, 10
and every 4th (and the last); the lowest is kept as the best state, saved to WORKDIR/best.npz at the end.
"""

import os
import signal
import sys

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import lstm, runner, train, unroll


def make():
    cell = lstm()
    params = {"cell": cell.init_params(jax.random.key(0), 2, 6), "out": jnp.zeros((6, 1))}

    def batch_fn(k):
        xs = jax.random.normal(jax.random.fold_in(jax.random.key(1), k), (4, 7, 2))
        return xs, jnp.sum(xs[:, :, 0], axis=1, keepdims=True)

    def predict(params, xs):
        return unroll(cell, params["cell"], xs).outputs[:, -1] @ params["out"]

    def loss_fn(params, batch, key):
        xs, targets = batch
        noise = 0.01 * jax.random.normal(key, targets.shape)  # uses the step key: resumption must restore it
        return jnp.mean(jnp.square(predict(params, xs) - targets - noise)), {}

    training = train.make_training(loss_fn, train.optimizer("adam", 0.02), train.Clipping("global_norm", 1.0))
    held_out = batch_fn(10**6)  # a batch no update reads
    evaluate = jax.jit(lambda params: {"loss": jnp.mean(jnp.square(predict(params, held_out[0]) - held_out[1]))})
    return training, training.init(params, jax.random.key(2)), batch_fn, evaluate


def leaves(params) -> dict[str, np.ndarray]:
    return {str(i): np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(params))}


def main(workdir, num_steps, kill_at=0, with_evaluation=False):
    training, state, batch_fn, evaluate = make()
    evaluations = []

    def evaluate_or_die(params):
        evaluations.append(params)
        if with_evaluation and kill_at and len(evaluations) == 4:  # the 4th: update 10 (after 0, 4, 8)
            os.kill(os.getpid(), signal.SIGKILL)
        return evaluate(params)

    def callback(step, state):
        if step == kill_at and not with_evaluation:
            os.kill(os.getpid(), signal.SIGKILL)

    evaluation = None
    if with_evaluation:
        evaluation = runner.Evaluation(evaluate_or_die, every=4, at=(0, 10), select="loss", mode="min")
    options = runner.Options(log_every=3, checkpoint_every=5)
    fit = runner.fit(training, state, batch_fn, num_steps, workdir, evaluation=evaluation, options=options,
                     callback=callback)  # fmt: skip
    np.savez(os.path.join(workdir, "final.npz"), **leaves(fit.state.params))
    if with_evaluation:
        np.savez(os.path.join(workdir, "best.npz"), **leaves(runner.restore_best(workdir, make()[1]).params))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:] == ["evaluate"])
