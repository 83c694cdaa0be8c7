"""Long-dependency benchmarks: train each cell on a synthetic task at several lengths, watch the gradients.

For every cell and sequence length T, a model (the cell, then a linear readout) is trained with
``seqjax.loop.fit`` in ``<workdir>/runs/<cell>_T<T>`` (so an interrupted sweep resumes), evaluated on
held-out batches, and compared with the task's trivial baseline. Every ``profile_every`` steps the
batch-mean ||dL/dh_t|| over t is recorded on a fixed batch (the core's gradient probes).

Tasks, losses, metrics and the criterion for "solved":
  adding / adding_hochreiter  inputs [b, t, 2]; MSE of the last output; solved: test MSE < 0.01.
  copy (delay T)              one-hot tokens; cross-entropy at every step (nats); solved: the 10
                              recalled symbols >= 99% correct.
  temporal_order              one-hot tokens; cross-entropy of the last output over 4 classes;
                              solved: test accuracy >= 99%.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import distributed, gradflow, initializers, loop, parallel, plots, train, workdir
from seqjax.cells import Cell, cell_by_name
from seqjax.data import synthetic
from seqjax.scan import unroll

TASKS = ("adding", "adding_hochreiter", "copy", "temporal_order")


@dataclasses.dataclass(frozen=True)
class Config:
    cells: tuple[str, ...] = ("rnn", "lstm", "gru")
    task: str = "adding"
    seq_lens: tuple[int, ...] = (50, 100, 200)
    hidden: int = 128
    batch: int = 50
    train_steps: int = 2000
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"
    clip: str = "global_norm"
    clip_threshold: float = 1.0
    recurrent_init: str = "orthogonal"
    recurrent_scale: float = 1.0
    forget_bias: float = 1.0
    test_batches: int = 10
    log_every: int = 100
    checkpoint_every: int = 500
    profile_every: int = 250
    num_devices: int = 0  # split every batch over this many devices (data parallel); 0: all visible
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Task:
    """What a task needs from the model: input and output sizes, a batch generator, loss and metrics."""

    input_size: int
    output_size: int
    batch: Callable  # key -> (xs [b, t, d] float32, targets)
    loss: Callable  # (outputs [b, t, o], targets) -> scalar
    metric: Callable  # (outputs, targets) -> scalar test metric (lower is better)
    metric_name: str
    baseline: float  # the metric of the trivial predictor
    solved: Callable  # metric value -> bool


def make_task(config: Config, seq_len: int) -> Task:
    if config.task in ("adding", "adding_hochreiter"):
        variant = "le" if config.task == "adding" else "hochreiter"
        baseline = synthetic.ADDING_LE_BASELINE_MSE if variant == "le" else synthetic.ADDING_HOCHREITER_BASELINE_MSE

        def mse(outputs, targets):
            return jnp.mean(jnp.square(outputs[:, -1] - targets))

        return Task(
            2,
            1,
            lambda key: synthetic.adding_problem(key, config.batch, seq_len, variant),
            mse,
            mse,
            "test MSE",
            baseline,
            lambda m: m < 0.01,
        )
    if config.task == "copy":
        vocab = synthetic.COPY_VOCAB_SIZE

        def copy_batch(key):
            tokens, targets = synthetic.copy_memory(key, config.batch, seq_len)
            return jax.nn.one_hot(tokens, vocab), targets

        def cross_entropy(logits, targets):
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], axis=-1))

        def recall_error(logits, targets):
            recalled = jnp.argmax(logits[:, -synthetic.COPY_LENGTH :], axis=-1)
            return jnp.mean((recalled != targets[:, -synthetic.COPY_LENGTH :]).astype(jnp.float32))

        return Task(
            vocab,
            vocab,
            copy_batch,
            cross_entropy,
            recall_error,
            "recall error",
            1.0 - 1.0 / synthetic.COPY_NUM_SYMBOLS,
            lambda m: m <= 0.01,
        )
    if config.task == "temporal_order":
        vocab = len(synthetic.TEMPORAL_ORDER_VOCAB)

        def order_batch(key):
            tokens, labels = synthetic.temporal_order(key, config.batch, seq_len)
            return jax.nn.one_hot(tokens, vocab), labels

        def cross_entropy(logits, labels):
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits[:, -1]), labels[:, None], axis=-1))

        def error(logits, labels):
            return jnp.mean((jnp.argmax(logits[:, -1], axis=-1) != labels).astype(jnp.float32))

        return Task(
            vocab,
            4,
            order_batch,
            cross_entropy,
            error,
            "test error",
            1.0 - synthetic.TEMPORAL_ORDER_BASELINE_ACCURACY,
            lambda m: m <= 0.01,
        )
    raise ValueError(f"unknown task {config.task!r}; known: {', '.join(TASKS)}")


def build_cell(config: Config, name: str) -> Cell:
    init = initializers.recurrent_init(config.recurrent_init, config.recurrent_scale)
    return cell_by_name(name, init, forget_bias=config.forget_bias)


# Flags a checkpoint depends on: a rerun in the same --workdir must keep them (train_steps too, unless
# the learning rate is constant, where more steps simply continue the run).
FIXED_FLAGS = (
    "task",
    "hidden",
    "batch",
    "optimizer",
    "learning_rate",
    "schedule",
    "clip",
    "clip_threshold",
    "recurrent_init",
    "recurrent_scale",
    "forget_bias",
    "seed",
)


def fixed_flags(config: Config) -> tuple[str, ...]:
    return FIXED_FLAGS + (() if config.schedule == "constant" else ("train_steps",))


def run_one(config: Config, name: str, seq_len: int, out_dir: Path, progress: bool = True) -> dict:
    """Trains (or resumes, or reloads) one cell at one length; returns its result row and gradient profiles.

    The run's directory keeps, besides the checkpoints and metrics, ``progress.json`` (the gradient
    profiles so far and the training wall time up to the last checkpoint) and, once finished,
    ``result.json``; a finished run with the same ``train_steps`` and ``test_batches`` is not redone.
    """
    path = run_dir(out_dir, name, seq_len)
    done = _read_json(path / "result.json")
    if done and (done["train_steps"], done["test_batches"]) == (config.train_steps, config.test_batches):
        return {**done, "profiles": _profiles_of(_read_json(path / "progress.json"))}

    task, cell = make_task(config, seq_len), build_cell(config, name)
    key = jax.random.key(config.seed)
    init_key, train_key, probe_key, test_key = (jax.random.fold_in(key, i) for i in range(4))
    k_cell, k_out = jax.random.split(init_key)
    params = {
        "cell": cell.init_params(k_cell, task.input_size, config.hidden),
        "readout": initializers.lecun_normal(k_out, (config.hidden, task.output_size)),
    }

    def outputs_of(params, xs, **kwargs):
        return unroll(cell, params["cell"], xs, **kwargs).outputs @ params["readout"]

    def loss_fn(params, batch, key):
        del key
        return task.loss(outputs_of(params, batch[0]), batch[1]), {}

    lr = train.schedule(config.schedule, config.learning_rate, config.train_steps)
    training = train.make_training(
        loss_fn, train.optimizer(config.optimizer, lr), train.Clipping(config.clip, config.clip_threshold), lr
    )
    probe_xs, probe_targets = task.batch(probe_key)

    @jax.jit
    def profile(params):
        def loss_of(unrolled):
            return task.loss(unrolled.outputs @ params["readout"], probe_targets)

        _, grads = gradflow.carry_gradients(loss_of, cell, params["cell"], probe_xs)
        # The first carry leaf: h for every built-in cell (LSTMCarry(hidden, cell) flattens hidden first).
        return jax.tree.leaves(gradflow.mean_over_batch(gradflow.step_norms(grads)))[0]

    path.mkdir(parents=True, exist_ok=True)
    record = _read_json(path / "progress.json") or {"profiles": {}, "train_s": 0.0}
    profiles = _profiles_of(record)
    # Wall time counts the work that reached a checkpoint: what a killed run did after it is redone.
    started, train_s = time.perf_counter(), record["train_s"]

    def save_progress():
        record["profiles"] = {str(k): v.tolist() for k, v in sorted(profiles.items())}
        record["train_s"] = round(train_s + time.perf_counter() - started, 2)
        workdir.write_json(path / "progress.json", record)

    def callback(step, state):
        if step % config.profile_every == 0 or step == config.train_steps:
            profiles[step] = np.asarray(profile(state.params))
        if step % config.checkpoint_every == 0 or step == config.train_steps:
            save_progress()

    if 0 not in profiles:
        profiles[0] = np.asarray(profile(params))
    state = loop.fit(
        training,
        training.init(params, train_key),
        lambda k: task.batch(jax.random.fold_in(train_key, k)),
        config.train_steps,
        path,
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        callback=callback,
        progress=progress,
        mesh=parallel.mesh_for(config.num_devices, config.batch),
    )
    save_progress()  # also when the run was already complete: fit then takes no step
    evaluate = jax.jit(lambda p, xs, y: task.metric(outputs_of(p, xs), y))
    values = [
        float(evaluate(state.params, *task.batch(jax.random.fold_in(test_key, i)))) for i in range(config.test_batches)
    ]
    metric = float(np.mean(values))
    result = {
        "cell": name,
        "seq_len": seq_len,
        "metric": task.metric_name,
        "value": metric,
        "baseline": task.baseline,
        "solved": bool(task.solved(metric)),
        "train_steps": config.train_steps,
        "test_batches": config.test_batches,
        "train_s": record["train_s"],
    }
    workdir.write_json(path / "result.json", result)
    return {**result, "profiles": profiles}


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _profiles_of(record: dict | None) -> dict[int, np.ndarray]:
    return {int(k): np.asarray(v) for k, v in (record or {}).get("profiles", {}).items()}


def run_dir(out_dir: Path, cell: str, seq_len: int) -> Path:
    """Where one cell at one length trains: ``<workdir>/runs/<cell>_T<seq_len>``."""
    return out_dir / "runs" / f"{cell.replace(':', '_')}_T{seq_len}"


def run(config: Config, out_dir: str | Path, progress: bool = True) -> list[dict]:
    """Every cell at every length; writes results.csv/json, gradient_profiles.csv and the figures.

    Raises:
      workdir.WorkdirError: ``out_dir`` holds foreign files, another experiment's run, or a run made
        with different ``fixed_flags`` (nothing is written then).
    """
    out_dir = workdir.claim(out_dir, "long_dependency", dataclasses.asdict(config), fixed_flags(config))
    results = []
    for name in config.cells:
        for seq_len in config.seq_lens:
            row = run_one(config, name, seq_len, out_dir, progress)
            print(
                f"{name} T={seq_len}: {row['metric']} {row['value']:.4g} (baseline {row['baseline']:.4g}) "
                f"{'solved' if row['solved'] else 'not solved'} after {row['train_s']} s of training",
                flush=True,
            )
            results.append(row)
    _write(config, out_dir, results)
    return results


def _write(config: Config, out_dir: Path, results: list[dict]) -> None:
    if not distributed.is_primary():  # the figures read metrics.jsonl, which only the primary writes
        return
    table = [{k: v for k, v in r.items() if k != "profiles"} for r in results]
    workdir.write_json(out_dir / "results.json", table)
    workdir.write_csv(out_dir / "results.csv", table)
    workdir.write_csv(
        out_dir / "gradient_profiles.csv",
        [
            {"cell": r["cell"], "seq_len": r["seq_len"], "train_step": step, "t": t, "grad_norm": float(v)}
            for r in results
            for step, norms in sorted(r["profiles"].items())
            for t, v in enumerate(norms)
        ],
    )
    metric, baseline = results[0]["metric"], results[0]["baseline"]
    cells = dict.fromkeys(r["cell"] for r in results)
    curves = [
        plots.Curve(
            cell,
            np.array([r["seq_len"] for r in results if r["cell"] == cell]),
            np.array([r["value"] for r in results if r["cell"] == cell]),
            cell,
            "-o",
        )
        for cell in cells
    ]
    plots.metric_vs_length_figure(curves, metric, baseline, out_dir / "success.png")
    panels = []
    for r in results:
        if r["seq_len"] == max(config.seq_lens):
            steps = sorted(r["profiles"])
            norms = np.stack([r["profiles"][s] for s in steps])
            panels.append((f"{r['cell']}, T={r['seq_len']}", steps, np.log10(np.maximum(norms, 1e-38))))
    plots.heatmap_figure(panels, out_dir / "gradient_heatmap.png")
    learning = []
    for r in results:
        text = (run_dir(out_dir, r["cell"], r["seq_len"]) / "metrics.jsonl").read_text()
        logged = [json.loads(line) for line in text.splitlines()]
        steps, losses = np.array([m["step"] for m in logged]), np.array([m["loss"] for m in logged])
        label = f"{r['cell']} T={r['seq_len']}"
        learning.append(plots.Curve(label, steps, losses, label))
    is_mse = "MSE" in metric
    plots.gradient_flow_figure(
        [],
        out_dir / "learning_curves.png",
        learning_curves=learning,
        loss_label="training loss (MSE)" if is_mse else "training loss (cross-entropy, nats)",
        baseline=baseline if is_mse else None,
        title=f"task={config.task}",
    )
