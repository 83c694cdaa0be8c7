r"""Long-dependency benchmarks: RNN vs LSTM vs GRU on the adding, copy and temporal-order problems.

    python experiments/long_dependency.py --task=adding --seq_lens=200 --train_steps=2000 --workdir=runs/adding200
    python experiments/long_dependency.py --task=copy --seq_lens=10,50 --cell=lstm,gru --workdir=runs/copy

For every cell and sequence length T, a model (the cell, then a linear readout) is trained in
<workdir>/runs/<cell>_T<T> (an interrupted sweep resumes), evaluated on held-out batches and compared with the
task's trivial baseline. Every --profile_every updates the batch-mean ||dL/dh_t|| over t is recorded on a fixed
batch (the gradient probes), as the run's evaluations. Writes results.csv/json, gradient_profiles.csv,
success.png, gradient_heatmap.png and learning_curves.png.

Tasks, losses, metrics and the criterion for "solved":
  adding / adding_hochreiter  inputs [b, t, 2]; MSE of the last output; solved: test MSE < 0.01.
  copy (delay T)              one-hot tokens; cross-entropy at every step (nats); solved: the 10
                              recalled symbols >= 99% correct.
  temporal_order              one-hot tokens; cross-entropy of the last output over 4 classes;
                              solved: test accuracy >= 99%.
"""

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import config, distributed, gradflow, initializers, plots, runner, workdir
from seqjax import experiment as ex
from seqjax.cells import Cell, cell_by_name
from seqjax.data import synthetic
from seqjax.scan import unroll

TASKS = ("adding", "adding_hochreiter", "copy", "temporal_order")


@config.declare
class Config:
    cells: tuple[str, ...] = config.cells(
        ("rnn", "lstm", "gru"),
        f"Cells to train, each at every length. {config.CELL_HELP}",
        check=cell_by_name,
        fixed=False,
    )
    task: str = config.setting("adding", "The synthetic task.", choices=TASKS)
    seq_lens: tuple[int, ...] = config.setting(
        (50, 100, 200), "Sequence lengths T (copy: the delay).", at_least=1, fixed=False
    )
    hidden: int = config.setting(128, "Hidden size.", at_least=1)
    batch: int = config.setting(50, "Batch size.", at_least=1)
    train_steps: int = config.setting(
        2000, "Updates per cell and length.", at_least=1, fixed=config.decays_over_the_run
    )
    recurrent_init: str = config.setting("orthogonal", "Recurrent init.", choices=initializers.RECURRENT_INITS)
    recurrent_scale: float = config.setting(1.0, "Multiplier of the recurrent init.", at_least=0)
    forget_bias: float = config.setting(1.0, "Initial LSTM forget-gate bias.")
    test_batches: int = config.setting(10, "Held-out batches for the test metric.", at_least=1, fixed=False)
    profile_every: int = config.setting(250, "Gradient profile every this many updates.", at_least=1, fixed=False)
    optimization: config.Optimization = config.Optimization(clip=1.0)
    run: config.Run = config.Run(checkpoint_every=500)
    devices: config.Devices = config.Devices()


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


def make_task(c: Config, seq_len: int) -> Task:
    if c.task in ("adding", "adding_hochreiter"):
        variant = "le" if c.task == "adding" else "hochreiter"
        baseline = synthetic.ADDING_LE_BASELINE_MSE if variant == "le" else synthetic.ADDING_HOCHREITER_BASELINE_MSE

        def mse(outputs, targets):
            return jnp.mean(jnp.square(outputs[:, -1] - targets))

        return Task(
            2,
            1,
            lambda key: synthetic.adding_problem(key, c.batch, seq_len, variant),
            mse,
            mse,
            "test MSE",
            baseline,
            lambda m: m < 0.01,
        )
    if c.task == "copy":
        vocab = synthetic.COPY_VOCAB_SIZE

        def copy_batch(key):
            tokens, targets = synthetic.copy_memory(key, c.batch, seq_len)
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
    if c.task == "temporal_order":
        vocab = len(synthetic.TEMPORAL_ORDER_VOCAB)

        def order_batch(key):
            tokens, labels = synthetic.temporal_order(key, c.batch, seq_len)
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
    raise ValueError(f"unknown task {c.task!r}; known: {', '.join(TASKS)}")


def build_cell(c: Config, name: str) -> Cell:
    init = initializers.recurrent_init(c.recurrent_init, c.recurrent_scale)
    return cell_by_name(name, init, forget_bias=c.forget_bias)


def run_dir(out: Path, cell: str, seq_len: int) -> Path:
    """Where one cell at one length trains: ``<workdir>/runs/<cell>_T<seq_len>``."""
    return out / "runs" / f"{re.sub(r'[^A-Za-z0-9.=_-]+', '_', cell)}_T{seq_len}"  # a cell's file path: one name


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def run_one(c: Config, name: str, seq_len: int, out: Path) -> dict:
    """Trains (or resumes) one cell at one length; returns its result row with its gradient profiles."""
    path = run_dir(out, name, seq_len)
    task, cell = make_task(c, seq_len), build_cell(c, name)
    key = jax.random.key(c.run.seed)
    init_key, train_key, probe_key, test_key = (jax.random.fold_in(key, i) for i in range(4))
    k_cell, k_out = jax.random.split(init_key)
    params = {
        "cell": cell.init_params(k_cell, task.input_size, c.hidden),
        "readout": initializers.lecun_normal(k_out, (c.hidden, task.output_size)),
    }

    def outputs_of(params, xs):
        return unroll(cell, params["cell"], xs).outputs @ params["readout"]

    def loss_fn(params, batch, key):
        del key
        return task.loss(outputs_of(params, batch[0]), batch[1]), {}

    probe_xs, probe_targets = task.batch(probe_key)

    @jax.jit
    def profile(params):
        def loss_of(unrolled):
            return task.loss(unrolled.outputs @ params["readout"], probe_targets)

        _, grads = gradflow.carry_gradients(loss_of, cell, params["cell"], probe_xs)
        # The first carry leaf: h for every built-in cell (LSTMCarry(hidden, cell) flattens hidden first).
        return jax.tree.leaves(gradflow.mean_over_batch(gradflow.step_norms(grads)))[0]

    training = ex.training(loss_fn, c.optimization, c.devices.compute_dtype, c.train_steps, c.train_steps)
    fit = runner.fit(
        training,
        training.init(params, train_key),
        lambda k: task.batch(jax.random.fold_in(train_key, k)),
        c.train_steps,
        path,
        evaluation=runner.Evaluation(lambda p: {"grad_norm": profile(p)}, every=c.profile_every, at=(0,)),
        options=runner.Options(
            log_every=c.run.log_every,
            checkpoint_every=c.run.checkpoint_every,
            progress=False,
            mesh=ex.mesh(c, "batch"),
            shard_params_over=c.devices.shard_params_over,
        ),
    )
    evaluate = jax.jit(lambda p, xs, y: task.metric(outputs_of(p, xs), y))
    values = [
        float(evaluate(fit.state.params, *task.batch(jax.random.fold_in(test_key, i)))) for i in range(c.test_batches)
    ]
    metric = float(np.mean(values))
    result = {
        "cell": name,
        "seq_len": seq_len,
        "metric": task.metric_name,
        "value": metric,
        "baseline": task.baseline,
        "solved": bool(task.solved(metric)),
        "train_steps": c.train_steps,
        "test_batches": c.test_batches,
        "train_s": round(fit.history[-1]["train_s"], 2),
    }
    workdir.write_json(path / "result.json", result)
    return {**result, "profiles": {h["step"]: np.asarray(h["grad_norm"]) for h in fit.history}}


def run(c: Config, _, out: Path) -> list[dict]:
    """Every cell at every length; writes results.csv/json, gradient_profiles.csv and the figures."""
    results = []
    with ex.claimed(EXPERIMENT, c, out):
        for name in c.cells:
            for seq_len in c.seq_lens:
                row = run_one(c, name, seq_len, out)
                print(
                    f"{name} T={seq_len}: {row['metric']} {row['value']:.4g} (baseline {row['baseline']:.4g}) "
                    f"{'solved' if row['solved'] else 'not solved'} after {row['train_s']} s of training",
                    flush=True,
                )
                results.append(row)
        write_outputs(c, out, results)
    return results


def write_outputs(c: Config, out_dir: Path, results: list[dict]) -> None:
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
        if r["seq_len"] == max(c.seq_lens):
            steps = sorted(r["profiles"])
            norms = np.stack([r["profiles"][s] for s in steps])
            panels.append((f"{r['cell']}, T={r['seq_len']}", steps, np.log10(np.maximum(norms, 1e-38))))
    plots.heatmap_figure(panels, out_dir / "gradient_heatmap.png")
    learning = []
    for r in results:
        logged = read_metrics(run_dir(out_dir, r["cell"], r["seq_len"]))
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
        title=f"task={c.task}",
    )


EXPERIMENT = ex.Experiment(
    "long_dependency",
    Config,
    load=lambda c: None,
    run=run,
    summary=lambda _: "wrote results.csv, gradient_profiles.csv and figures",
)

if __name__ == "__main__":
    ex.main(EXPERIMENT)
