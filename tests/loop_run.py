"""A tiny LSTM training run through seqjax.loop.fit, for the kill-and-resume tests (run as a script).

    python tests/loop_run.py WORKDIR NUM_STEPS [KILL_AT]

Saves the final parameters to WORKDIR/final.npz; with KILL_AT, SIGKILLs itself after that step.
"""

import os
import signal
import sys

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import loop, lstm, train, unroll


def make():
    cell = lstm()
    params = {"cell": cell.init_params(jax.random.key(0), 2, 6), "out": jnp.zeros((6, 1))}

    def batch_fn(k):
        xs = jax.random.normal(jax.random.fold_in(jax.random.key(1), k), (4, 7, 2))
        return xs, jnp.sum(xs[:, :, 0], axis=1, keepdims=True)

    def loss_fn(params, batch, key):
        xs, targets = batch
        noise = 0.01 * jax.random.normal(key, targets.shape)  # uses the step key: resumption must restore it
        prediction = unroll(cell, params["cell"], xs).outputs[:, -1] @ params["out"]
        return jnp.mean(jnp.square(prediction - targets - noise)), {}

    training = train.make_training(loss_fn, train.optimizer("adam", 0.02), train.Clipping("global_norm", 1.0))
    return training, training.init(params, jax.random.key(2)), batch_fn


def main(workdir, num_steps, kill_at=None):
    training, state, batch_fn = make()

    def callback(step, state):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    final = loop.fit(training, state, batch_fn, num_steps, workdir, log_every=3, checkpoint_every=5, callback=callback)
    leaves = {str(i): np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(final.params))}
    np.savez(os.path.join(workdir, "final.npz"), **leaves)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
