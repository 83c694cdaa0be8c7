"""Data-parallel ``runner.fit`` vs one device, on 8 forced CPU devices (run as a script by test_data_parallel.py).

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/data_parallel_run.py OUT_DIR

Two runs of a few steps each, on meshes of 1 (no mesh) and 8 devices with the same global batch:
an LSTM regressor whose loss adds noise drawn from the step key (dropout-like randomness), and a
truncated-BPTT LSTM language model with dropout whose carry travels in ``model_state``. Writes
``OUT_DIR/result.json`` with the largest parameter difference from the one-device run per mesh size, and
facts about the 8-device run's layout and compiled step; and the rows of the scaling benchmark on 1 and 2
devices; and the gradient-flow experiment's and word2vec's training on 1 and 8 devices. (The language-model
experiment on 4 devices against one: tests/test_multiprocess.py, as 2 processes of 2 devices.)
"""

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import experiment, lstm, parallel, runner, train, unroll
from seqjax.data import word2vec_data as w2v_data
from seqjax.models import lm, lm_training, word2vec
from seqjax.models import word2vec_training as w2v_training

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "experiments"), str(ROOT / "benchmarks")]  # as the scripts import their siblings
import gradient_flow  # noqa: E402
import scaling  # noqa: E402

ROWS = 8  # the global batch
STEPS = 6


def regressor():
    cell = lstm()
    params = {"cell": cell.init_params(jax.random.key(0), 3, 5), "out": 0.1 * jnp.ones((5, 1))}

    def batch_fn(k):
        xs = np.asarray(jax.random.normal(jax.random.fold_in(jax.random.key(1), k), (ROWS, 6, 3)))
        return xs, np.sum(xs[:, :, 0], axis=1, keepdims=True)

    def loss_fn(params, batch, key):
        xs, targets = batch
        noise = 0.1 * jax.random.normal(key, targets.shape)  # drawn for the global batch from the step key
        prediction = unroll(cell, params["cell"], xs).outputs[:, -1] @ params["out"]
        return jnp.mean(jnp.square(prediction - targets - noise)), {}

    training = train.make_training(loss_fn, train.optimizer("sgd", 0.05), train.Clipping("global_norm", 1.0))
    return training, lambda: training.init(params, jax.random.key(2)), batch_fn


def language_model():
    config = lm.LMConfig(vocab_size=11, num_layers=2, hidden_size=8, dropout=0.2)
    params = lm.init_params(config, jax.random.key(3))
    bptt = 4
    streams = np.asarray(jax.random.randint(jax.random.key(4), (ROWS, 1 + bptt * STEPS), 0, 11), np.int32)

    def batch_fn(k):
        return streams, np.int32(k), np.bool_(k == 0)

    training = train.make_training(
        lm_training.window_loss(config, bptt), train.optimizer("momentum", 0.1), stateful=True
    )
    return training, lambda: training.init(params, jax.random.key(5), lm.init_carry(config, params, ROWS)), batch_fn


def fit(make, workdir: Path, mesh, shard_params_over: int = 0):
    training, init, batch_fn = make()
    with jax.numpy_dtype_promotion("standard"):
        options = runner.Options(log_every=STEPS, progress=False, mesh=mesh, shard_params_over=shard_params_over)
        return runner.fit(training, init(), batch_fn, STEPS, workdir, options=options).state


def gradient_flow_runs(out: Path) -> dict:
    """The gradient-flow experiment's training (the runner's scan of steps, batches drawn inside the jitted scan) on
    1 and 8 devices."""
    config = gradient_flow.Config(
        cells=("lstm",), seq_len=6, hidden=5, batch=ROWS, train_steps=STEPS, learning_rate=0.05
    )
    cell = gradient_flow.settings(config)[0].cell
    params = gradient_flow.init_model(cell, jax.random.key(6), config)
    training = experiment.training(gradient_flow.task_loss_fn(cell, config), config.optimization, "float32", 1, STEPS)
    key = jax.random.key(7)
    states = {}
    for n, mesh in ((1, None), (8, parallel.data_mesh(8))):
        state = training.init(jax.tree.map(jnp.copy, params), key)  # the state is donated
        options = runner.Options(checkpoint_every=0, steps_per_call=STEPS, progress=False, mesh=mesh)
        batches = lambda step: gradient_flow.task_batch(config, jax.random.fold_in(key, step))
        with jax.numpy_dtype_promotion("standard"):
            states[n] = runner.fit(training, state, batches, STEPS, out / f"gradient_flow_{n}", options=options).state
    return {
        "8": largest_difference(jax.tree.leaves(states[1].params), jax.tree.leaves(states[8].params)),
        "moved": largest_difference(jax.tree.leaves(states[1].params), jax.tree.leaves(params)),
        "devices": len(jax.tree.leaves(states[8].params)[0].sharding.device_set),
    }


def word2vec_runs() -> dict:
    """word2vec's sparse SGD (skip-gram, negative sampling) for one epoch on 1 and 8 devices."""
    rng = np.random.default_rng(0)
    sentences = [[f"w{i}" for i in rng.integers(12, size=6)] for _ in range(60)]
    vocab = w2v_data.build_vocab(sentences, min_count=1)
    corpus = w2v_data.encode(sentences, vocab)
    config = w2v_training.TrainConfig(epochs=1, batch_size=32, chunk_batches=4, sample=0, alpha=0.05)
    params = word2vec.init_params(jax.random.key(8), len(vocab), 8)
    trained = {}
    for n, mesh in ((1, None), (8, parallel.data_mesh(8))):
        start = jax.tree.map(jnp.copy, params)  # donated to the chunk steps
        trained[n], _ = w2v_training.train(start, corpus, vocab, config, jax.random.key(9), mesh=mesh)
    return {
        "8": largest_difference(jax.tree.leaves(trained[1]), jax.tree.leaves(trained[8])),
        "moved": largest_difference(jax.tree.leaves(trained[1]), jax.tree.leaves(params)),
        "devices": len(trained[8].input.sharding.device_set),
    }


def largest_difference(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b, strict=True))


def main(out: Path):
    result = {"devices": jax.device_count()}
    # the regressor's parameters replicated; the language model's of >= 64 elements split over the devices
    for name, make, shard_params_over in (("regressor", regressor, 0), ("language_model", language_model, 64)):
        one = fit(make, out / f"{name}_1", None)
        reference = jax.tree.leaves(one.params)
        result[name] = {}
        for n in (8,):
            state = fit(make, out / f"{name}_{n}", parallel.data_mesh(n), shard_params_over)
            result[name][str(n)] = largest_difference(reference, jax.tree.leaves(state.params))
        result[name]["moved"] = largest_difference(reference, jax.tree.leaves(make()[1]().params))
        result[name]["param_devices"] = len(jax.tree.leaves(state.params)[0].sharding.device_set)
        result[name]["param_shard_rows"] = {  # rows each device holds, per parameter shape
            str(tuple(leaf.shape)): leaf.addressable_shards[0].data.shape[0] for leaf in jax.tree.leaves(state.params)
        }
        if state.model_state is not None:
            carry = jax.tree.leaves(state.model_state)[0]  # [ROWS, h], split by rows
            result[name]["carry_shard_shapes"] = sorted({tuple(s.data.shape) for s in carry.addressable_shards})
            result[name]["carry_difference"] = largest_difference(
                jax.tree.leaves(one.model_state), jax.tree.leaves(state.model_state)
            )

    training, init, batch_fn = regressor()
    mesh = parallel.data_mesh(8)
    state = parallel.place_state(init(), mesh)
    with jax.numpy_dtype_promotion("standard"):
        compiled = parallel.data_parallel_step(training, mesh, state).lower(
            state, parallel.shard_batch(batch_fn(0), mesh)
        )
        result["all_reduce_in_step"] = "all-reduce" in compiled.compile().as_text()
    for call in (lambda: parallel.data_mesh(9), lambda: parallel.check_divisible(12, mesh)):
        try:
            call()
        except ValueError as e:
            result.setdefault("errors", []).append(str(e))
    result["gradient_flow"] = gradient_flow_runs(out)
    result["word2vec"] = word2vec_runs()
    tiny = scaling.Config(devices=(1, 2), hidden=8, num_layers=1, vocab=20, bptt=4, batch_per_device=2, global_batch=4,
                          steps=2, warmup=1)  # fmt: skip
    with jax.numpy_dtype_promotion("standard"):
        result["scaling_rows"] = scaling.run(tiny)
    (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
