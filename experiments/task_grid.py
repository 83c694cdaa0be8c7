r"""Which recurrences count, copy and recall: every cell against every memory task, trained short, tested long.

    python experiments/task_grid.py --workdir=runs/task_grid
    python experiments/task_grid.py --preset=full --workdir=runs/task_grid_full
    python experiments/task_grid.py --preset=mnist1d --workdir=runs/mnist1d
    python experiments/task_grid.py --preset=deletang --workdir=runs/deletang
    python experiments/task_grid.py --cell=gru,examples/my_cells.py:indrnn --tasks=parity --workdir=runs/mine

For every task, cell and seed a model (``seqjax.models.task_model``: the cell in a plain or residual stack, or a
causal Transformer) trains in ``<workdir>/runs/<task>/<cell>/seed<k>`` through the project's runner (an
interrupted grid resumes run by run), then is tested at the training length T and at every ``--test_lengths``
(length generalisation). Every ``--profile_every`` updates the batch-mean ||dL/dx_t|| over t on a fixed batch
is kept (the input-gradient profile, defined for every model alike).

Training lengths: a state-tracking task (parity, modular arithmetic, cycle navigation) answers for every prefix,
so each training example gets its own length, uniform in [the task's shortest, T], scored at its last step
(Deletang et al. 2023 draw one length per batch; per example, one batch compiles once). The other tasks train at
length T. MNIST-1D is a fixed dataset of length 40: ``--train_length`` and ``--test_lengths`` do not apply, and its
test set is scored once.

``--test_up_to=M`` (state-tracking tasks) also tests every length 1..M, as Deletang et al. do, from the answers
to the prefixes of length-M strings (a causal model's answer at step l is its answer to the l-token string); the
score is then the mean accuracy over lengths T+1..M (the ``deletang`` preset: their reference script's setting).

Writes results.json/csv (one row per run: accuracy at T and at each test length, the generalisation score = the
mean accuracy over the test lengths, solved = score >= --solved_at), results.md (the table), accuracy.png (a
cells x tasks heat map of the score, mean over seeds), lengths.png (accuracy against length, one panel per task,
min-max over seeds), gradient_profiles.csv and gradients.png (the first seed's profiles, at initialisation and
after training).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import config, distributed, plots, runner, workdir
from seqjax import experiment as ex
from seqjax.cells import cell_by_name
from seqjax.data import memory_tasks, mnist1d
from seqjax.models import task_model
from seqjax.models import task_training as tt

DATASETS = ("mnist1d", "mnist1d_shuffled")
TASKS = (*memory_tasks.TASKS, *DATASETS)
DEFAULT_CELLS = ("rnn", "lstm", "gru", "mingru", "mingru_signed", "lru_real", "lru_signed")
ALL_CELLS = (
    "rnn",
    "lstm",
    "gru",
    "mingru",
    "mingru_signed",
    "minlstm",
    "lru",
    "lru_real",
    "lru_signed",
    "rglru",
    "transformer",
)


def check_cell(name: str) -> None:
    """A cell ``cell_by_name`` builds, or the Transformer baseline."""
    if name != task_model.TRANSFORMER:
        cell_by_name(name)


@config.declare
class Config:
    cells: tuple[str, ...] = config.cells(
        DEFAULT_CELLS, f"Models: cells, or 'transformer' (a causal one). {config.CELL_HELP}", check=check_cell,
        fixed=False,
    )  # fmt: skip
    tasks: tuple[str, ...] = config.setting(
        ("parity", "cycle_navigation", "modular_arithmetic"), "Tasks.", choices=TASKS, fixed=False
    )
    seeds: tuple[int, ...] = config.setting((0,), "Seeds: one run per task, cell and seed.", fixed=False)
    train_length: int = config.setting(40, "T: the longest training sequence.", at_least=1)
    test_lengths: tuple[int, ...] = config.setting(
        (80, 160, 320), "Test lengths beyond T (length generalisation).", at_least=1, fixed=False
    )
    test_up_to: int = config.setting(
        0, "M: also test every length 1..M of the state-tracking tasks, each read off the answers to the prefixes of "
        "--test_batches batches of length M; the score is then the mean accuracy over lengths T+1..M (Deletang et "
        "al.'s). 0: off.", at_least=0, fixed=False,
    )  # fmt: skip
    hidden: int = config.setting(64, "Hidden size h.", at_least=1)
    num_layers: int = config.setting(1, "Layers.", at_least=1)
    body: str = config.setting("plain", "A cell's stack: plain or residual.", choices=task_model.BODIES[:2])
    readout: str = config.setting(
        "steps", "steps: an answer at every step; flatten: every step's output at once (fixed length).",
        choices=task_model.READOUTS,
    )  # fmt: skip
    bidirectional: bool = config.setting(False, "Read both ways (plain stack, fixed-length datasets only).")
    init: str = config.setting(
        "seqjax", "seqjax: the cells' own initialisers; pytorch (plain stack): every parameter uniform in "
        "+-1/sqrt(h), the readout's in +-1/sqrt(its inputs), as PyTorch's nn.GRU and nn.Linear.",
        choices=task_model.INITS,
    )  # fmt: skip
    batch: int = config.setting(64, "Batch size.", at_least=1)
    train_steps: int = config.setting(3000, "Updates per run.", at_least=1, fixed=config.decays_over_the_run)
    test_batches: int = config.setting(8, "Held-out batches per test length.", at_least=1, fixed=False)
    profile_every: int = config.setting(500, "Input-gradient profile every this many updates.", at_least=1,
                                        fixed=False)  # fmt: skip
    holdout: int = config.setting(
        0, "A fixed dataset's last training examples held out: the state with the best accuracy on them (evaluated "
        "every --profile_every updates) is the one tested; 0: the final state.", at_least=0,
    )  # fmt: skip
    solved_at: float = config.setting(0.9, "Solved: a generalisation score at least this.", at_least=0, fixed=False)
    log_every: int = config.setting(100, "Training metrics every this many updates.", at_least=1, fixed=False)
    checkpoint_every: int = config.setting(1000, "Checkpoint every this many updates.", at_least=1, fixed=False)
    optimization: config.Optimization = config.Optimization(learning_rate=3e-3, clip=1.0)
    devices: config.Devices = config.Devices()

    def validate(self):
        datasets = [t for t in self.tasks if t in DATASETS]
        if (self.readout == "flatten" or self.bidirectional) and len(datasets) < len(self.tasks):
            raise config.ConfigError(
                f"--readout=flatten and --bidirectional read a fixed length: only {', '.join(DATASETS)} have one"
            )
        if self.holdout and len(datasets) < len(self.tasks):
            raise config.ConfigError(f"--holdout splits a fixed training set: only {', '.join(DATASETS)} have one")
        if mnist1d.TRAIN_EXAMPLES - self.holdout < self.batch:
            raise config.ConfigError(
                f"--holdout={self.holdout} leaves {mnist1d.TRAIN_EXAMPLES - self.holdout} of MNIST-1D's "
                f"{mnist1d.TRAIN_EXAMPLES} training examples, fewer than --batch={self.batch}"
            )
        if self.test_up_to:
            others = [t for t in self.tasks if t not in memory_tasks.STATE_TRACKING]
            if others:
                raise config.ConfigError(
                    f"--test_up_to reads every prefix's answer: only {', '.join(memory_tasks.STATE_TRACKING)} have "
                    f"one, not {', '.join(others)}"
                )
            if self.test_up_to <= self.train_length:
                raise config.ConfigError(
                    f"--test_up_to={self.test_up_to} must be above --train_length={self.train_length}"
                )
        if task_model.TRANSFORMER in self.cells and self.bidirectional:
            raise config.ConfigError("--bidirectional applies to the recurrent cells, not 'transformer'")
        if self.init == "pytorch" and (self.body != "plain" or task_model.TRANSFORMER in self.cells):
            raise config.ConfigError("--init=pytorch applies to the plain stack of a cell (--body=plain), not "
                                     "the residual body or 'transformer'")  # fmt: skip
        for name in self.tasks:
            if name in DATASETS:
                continue
            shortest = memory_tasks.TASKS[name].min_length
            if self.train_length < shortest:
                raise config.ConfigError(f"--train_length={self.train_length} is below {name}'s shortest ({shortest})")


PRESETS = {
    "deletang": {  # Deletang et al. 2023's reference script (experiments/example.py): h = 256, 10,000 x 128, Adam 1e-3
        "cells": ("rnn", "lstm"),
        "tasks": ("parity", "cycle_navigation", "modular_arithmetic"),
        "hidden": 256,
        "batch": 128,
        "train_steps": 10_000,
        "learning_rate": 1e-3,
        "clip": 1.0,
        "test_up_to": 500,
        "test_lengths": (100, 500),
        "test_batches": 4,  # 512 strings per length, as their range evaluation
    },
    "full": {"cells": ALL_CELLS, "tasks": tuple(memory_tasks.TASKS), "seeds": (0, 1, 2)},
    "mnist1d": {  # the mnist1d repository's recurrent baseline: a bidirectional GRU, h = 6, all 40 outputs read
        "cells": ("gru", "lstm", "rnn"),
        "tasks": DATASETS,
        "seeds": (0, 1, 2, 3, 4),
        "hidden": 6,
        "bidirectional": True,
        "readout": "flatten",
        "init": "pytorch",
        "batch": 100,
        "train_steps": 8000,
        "learning_rate": 1e-2,
        "schedule": "cosine",
        "clip": 0.0,
        "profile_every": 2000,
        "checkpoint_every": 2000,
    },
}


@dataclasses.dataclass(frozen=True)
class GridTask:
    """What a run needs from its task: the model's input and output, training batches, test sets."""

    name: str
    inputs: int  # V for tokens, d for features
    tokens: bool
    num_classes: int
    chance: float
    train_batch: Callable  # (key, step) -> Batch, traceable
    test_sets: Callable  # key -> {length: [Batch, ...]}
    probe: Callable  # key -> Batch: the fixed batch of the gradient profile
    fixed_length: int | None  # the datasets' length; None for generated tasks
    validation: list | None = None  # batches held out of a dataset's training set for selection (--holdout)
    prefix_sets: Callable | None = None  # key -> [Batch, ...] of length M whose every prefix is tested (--test_up_to)


def _chunks(inputs: np.ndarray, labels: np.ndarray, size: int = 500) -> list[tt.Batch]:
    """A fixed set of labelled sequences as batches of at most ``size``."""
    return [tt.labelled_sequences(jnp.asarray(inputs[i : i + size]), jnp.asarray(labels[i : i + size]))
            for i in range(0, len(labels), size)]  # fmt: skip


def grid_task(c: Config, name: str) -> GridTask:
    if name in DATASETS:
        data = mnist1d.load(shuffled=name.endswith("shuffled"))
        kept = len(data.train_labels) - c.holdout  # at least --batch: Config.validate
        train_inputs, train_labels = data.train_inputs[:kept], data.train_labels[:kept]
        return GridTask(
            name, 1, False, mnist1d.NUM_CLASSES, 1.0 / mnist1d.NUM_CLASSES,
            lambda key, step: tt.epoch_batch(train_inputs, train_labels, key, step, c.batch),
            lambda key: {mnist1d.LENGTH: _chunks(data.test_inputs, data.test_labels)},
            lambda key: _chunks(train_inputs[:64], train_labels[:64])[0],
            mnist1d.LENGTH,
            _chunks(data.train_inputs[kept:], data.train_labels[kept:]) or None,
        )  # fmt: skip
    task = memory_tasks.TASKS[name]
    generate = jax.jit(task.generate, static_argnums=(1, 2))  # test sets and the probe: one compile each

    def as_batch(made) -> tt.Batch:
        return tt.Batch(made.tokens, made.targets, made.mask)

    def train_batch(key, step):
        k_batch, k_lengths = jax.random.split(jax.random.fold_in(key, step))
        made = task.generate(k_batch, c.batch, c.train_length)
        if name in memory_tasks.STATE_TRACKING:  # each example its own length, answered at its last step
            lengths = memory_tasks.sample_lengths(k_lengths, name, c.batch, c.train_length)
            made = made._replace(mask=memory_tasks.final_positions_mask(name, c.train_length, lengths))
        return as_batch(made)

    def test_sets(key):
        lengths = (c.train_length, *c.test_lengths)
        return {
            length: [as_batch(generate(jax.random.fold_in(key, 1000 * length + i), c.batch, length))
                     for i in range(c.test_batches)]
            for length in lengths
        }  # fmt: skip

    def prefix_sets(key):
        return [as_batch(generate(jax.random.fold_in(key, i), c.batch, c.test_up_to)) for i in range(c.test_batches)]

    return GridTask(
        name, task.vocab_size, True, task.num_classes, task.chance, train_batch, test_sets,
        lambda key: as_batch(generate(key, c.batch, c.train_length)), None, None,
        prefix_sets if c.test_up_to and name in memory_tasks.STATE_TRACKING else None,
    )  # fmt: skip


def run_dir(out: Path, task: str, cell: str, seed: int) -> Path:
    """``<workdir>/runs/<task>/<cell>/seed<k>`` (a cell's file path made one name)."""
    return out / "runs" / task / re.sub(r"[^A-Za-z0-9.=_-]+", "_", cell) / f"seed{seed}"


def model_config(c: Config, task: GridTask, cell: str) -> task_model.TaskModelConfig:
    return task_model.TaskModelConfig(
        cell, task.inputs, task.tokens, task.num_classes, c.hidden, c.num_layers, c.body, c.readout,
        task.fixed_length, c.bidirectional, c.init,
    )  # fmt: skip


def run_one(c: Config, task: GridTask, cell: str, seed: int, out: Path) -> dict:
    """Trains (or resumes) one model; tests it; returns its result row with its gradient profiles."""
    path = run_dir(out, task.name, cell, seed)
    model = model_config(c, task, cell)
    key = jax.random.key(seed)
    init_key, train_key, probe_key, test_key, prefix_key = (jax.random.fold_in(key, i) for i in range(5))
    params = task_model.init_params(model, init_key)

    def loss_fn(params, batch, key):
        del key
        logits = task_model.apply(model, params, batch.inputs)
        return tt.cross_entropy(logits, batch), {"accuracy": tt.accuracy(logits, batch)}

    probe = task.probe(probe_key)
    profile = jax.jit(lambda p: tt.input_gradient_profile(model, p, probe))
    scores = jax.jit(lambda p, b: _scores(task_model.apply(model, p, b.inputs), b))

    def evaluate(params) -> dict:
        measured = {"grad_norm": profile(params)}
        if task.validation:
            measured["valid_accuracy"] = float(np.mean([float(scores(params, b)[0]) for b in task.validation]))
        return measured

    select = "valid_accuracy" if task.validation else ""
    training = ex.training(loss_fn, c.optimization, c.devices.compute_dtype, c.train_steps, c.train_steps)
    fit = runner.fit(
        training,
        training.init(params, train_key),
        lambda step: task.train_batch(train_key, step),  # drawn inside the jitted steps
        c.train_steps,
        path,
        evaluation=runner.Evaluation(evaluate, every=c.profile_every, at=(0,), select=select, mode="max"),
        options=runner.Options(
            log_every=c.log_every,
            checkpoint_every=c.checkpoint_every,
            steps_per_call=min(c.log_every, c.profile_every, c.checkpoint_every),
            progress=False,
            mesh=ex.mesh(c, "batch"),
            shard_params_over=c.devices.shard_params_over,
        ),
    )
    tested = runner.restore_best(path, fit.state).params if select else fit.state.params
    by_length, sequences = {}, {}
    for length, batches in task.test_sets(test_key).items():
        measured = np.array([[float(v) for v in scores(tested, b)] for b in batches])
        by_length[length], sequences[length] = float(measured[:, 0].mean()), float(measured[:, 1].mean())
    trained = task.fixed_length or c.train_length
    longer = [by_length[length] for length in by_length if length != trained] or [by_length[trained]]
    score = float(np.mean(longer))
    every_length = None
    if task.prefix_sets:  # the accuracy at lengths 1..M: step last_well_formed(l) of length-M strings
        every_length = accuracy_at_every_length(task.name, model, tested, task.prefix_sets(prefix_key))
        score = float(every_length[trained:].mean())
    result = {
        "task": task.name, "cell": cell, "seed": seed, "train_length": trained,
        "accuracy": by_length[trained], "score": score, "solved": score >= c.solved_at, "chance": task.chance,
        "accuracy_by_length": {str(k): v for k, v in by_length.items()},
        "sequence_accuracy_by_length": {str(k): v for k, v in sequences.items()},
        "train_steps": c.train_steps, "train_s": round(fit.history[-1]["train_s"], 2),
    }  # fmt: skip
    if every_length is not None:
        result["accuracy_every_length"] = [float(v) for v in every_length]
    if select:
        result |= {"selected_step": fit.best["step"], "valid_accuracy": fit.best["valid_accuracy"]}
    workdir.write_json(path / "result.json", result)
    return {**result, "profiles": {h["step"]: np.asarray(h["grad_norm"]) for h in fit.history}}


def accuracy_at_every_length(name: str, model: task_model.TaskModelConfig, params, batches: list) -> np.ndarray:
    """``[M]``: the accuracy on strings of length l = 1..M of state-tracking task ``name``, read off ``batches`` of
    length M: a causal model's answer at step ``last_well_formed(l)`` is its answer to the l-token string."""
    step_accuracy = jax.jit(lambda p, b: tt.accuracy_at_every_step(task_model.apply(model, p, b.inputs), b))
    by_step = np.mean([np.asarray(step_accuracy(params, b)) for b in batches], axis=0)
    return by_step[memory_tasks.last_well_formed(name, np.arange(1, by_step.shape[0] + 1))]


def _scores(logits: jax.Array, batch: tt.Batch) -> tuple[jax.Array, jax.Array]:
    """(accuracy, sequence accuracy) of one batch's logits."""
    return tt.accuracy(logits, batch), tt.sequence_accuracy(logits, batch)


def run(c: Config, _, out: Path) -> list[dict]:
    """Every task, cell and seed; then the tables and figures."""
    results = []
    started = time.perf_counter()
    with ex.claimed(EXPERIMENT, c, out):
        for name in c.tasks:
            task = grid_task(c, name)
            for cell in c.cells:
                for seed in c.seeds:
                    row = run_one(c, task, cell, seed, out)
                    lengths = ", ".join(f"{k}: {100 * v:.0f}%" for k, v in row["accuracy_by_length"].items())
                    verdict = "solved" if row["solved"] else "not solved"
                    print(f"{name} {cell} seed {seed}: {lengths}; score {100 * row['score']:.1f}% "
                          f"({verdict}, {row['train_s']} s)", flush=True)  # fmt: skip
                    results.append(row)
        write_outputs(c, out, results, time.perf_counter() - started)
    return results


def _mean_spread(values: list[float]) -> str:
    """``"mean"`` in percent, with ``" (min-max)"`` over more than one seed."""
    spread = f" ({100 * min(values):.0f}-{100 * max(values):.0f})" if len(values) > 1 else ""
    return f"{100 * np.mean(values):.1f}{spread}"


def summary_table(c: Config, results: list[dict]) -> str:
    """The markdown tables: scores (a row per cell, a column per task; mean over seeds, min-max), then every
    task's accuracy at each length and how many seeds solved it."""
    lines = ["| cell | " + " | ".join(c.tasks) + " |", "|---|" + "---:|" * len(c.tasks)]
    for cell in c.cells:
        scores = [[r["score"] for r in results if r["cell"] == cell and r["task"] == name] for name in c.tasks]
        lines.append(f"| {cell} | " + " | ".join(_mean_spread(v) for v in scores) + " |")
    lines += ["", "| task | cell | " + "accuracy at length (%, mean over seeds) | solved |", "|---|---|---|---:|"]
    for name in c.tasks:
        for cell in c.cells:
            rows = [r for r in results if r["cell"] == cell and r["task"] == name]
            at = ", ".join(
                f"{k}: {100 * np.mean([r['accuracy_by_length'][k] for r in rows]):.1f}"
                for k in rows[0]["accuracy_by_length"]
            )
            lines.append(f"| {name} | {cell} | {at} | {sum(r['solved'] for r in rows)} of {len(rows)} |")
    return "\n".join(lines) + "\n"


def write_outputs(c: Config, out: Path, results: list[dict], wall_s: float) -> None:
    if not distributed.is_primary():
        return
    table = [{k: v for k, v in r.items() if k != "profiles"} for r in results]
    workdir.write_json(out / "results.json", table)
    flat = [{k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in r.items()} for r in table]
    workdir.write_csv(out / "results.csv", flat)
    workdir.write_csv(
        out / "gradient_profiles.csv",
        [{"task": r["task"], "cell": r["cell"], "seed": r["seed"], "train_step": step, "t": t, "grad_norm": float(v)}
         for r in results for step, norms in sorted(r["profiles"].items()) for t, v in enumerate(norms)],
    )  # fmt: skip
    report = summary_table(c, results)
    tested = f"every length {c.train_length + 1}-{c.test_up_to}" if c.test_up_to else f"lengths {list(c.test_lengths)}"
    workdir.write_atomic(
        out / "results.md",
        f"# Scores (%, mean over seeds {list(c.seeds)}; min-max)\n\n"
        f"Score: the mean accuracy over {tested} after training up to "
        f"T = {c.train_length} (MNIST-1D: its test accuracy); solved: a score of at least {100 * c.solved_at:.0f}%. "
        f"Wall time {wall_s:.0f} s.\n\n" + report,
    )
    matrix = np.array([[np.mean([r["score"] for r in results if r["cell"] == cell and r["task"] == name])
                        for name in c.tasks] for cell in c.cells])  # fmt: skip
    title = f"mean accuracy at {tested} after training up to T={c.train_length}"
    if all(name in DATASETS for name in c.tasks):
        title = "test accuracy"
    chance_levels = np.array([next(r["chance"] for r in results if r["task"] == name) for name in c.tasks])
    heatmap = out / "accuracy.png"
    plots.grid_heatmap_figure(matrix, chance_levels, c.cells, c.tasks, heatmap, title=f"score (%): {title}")
    panels = []
    for name in c.tasks:
        lines = []
        for cell in c.cells:
            rows = [r for r in results if r["cell"] == cell and r["task"] == name]
            if "accuracy_every_length" in rows[0]:
                values = np.array([r["accuracy_every_length"] for r in rows])
                lengths = list(range(1, values.shape[1] + 1))
            else:
                lengths = sorted(int(k) for k in rows[0]["accuracy_by_length"])
                values = np.array([[r["accuracy_by_length"][str(k)] for k in lengths] for r in rows])
            lines.append(plots.Spread(cell, np.array(lengths), values.mean(0), values.min(0), values.max(0)))
        panels.append((name, lines))
    chance = list(chance_levels)
    plots.panels_figure(panels, out / "lengths.png", xlabel="test length", ylabel="accuracy", chance=chance)
    plots.gradient_flow_figure(
        gradient_panels(c, results), out / "gradients.png", ylabel="||dL/dx_t|| (batch mean)",
        title=f"input-gradient profile of seed {c.seeds[0]}: dashed at initialisation, solid after training",
    )  # fmt: skip
    print(report, end="")


def gradient_panels(c: Config, results: list[dict]) -> list[tuple[str, list[plots.Curve]]]:
    """Per task, each cell's ||dL/dx_t|| on the probe batch against T - t, at update 0 and at the last profile
    (the first seed's run)."""
    panels = []
    for name in c.tasks:
        curves = []
        for cell in c.cells:
            row = next(r for r in results if r["cell"] == cell and r["task"] == name and r["seed"] == c.seeds[0])
            for step, style in ((0, "--"), (max(row["profiles"]), "-")):
                norms = np.asarray(row["profiles"][step])
                back = np.arange(len(norms))[::-1]
                label = cell if style == "-" else f"{cell}, update 0"
                curves.append(plots.Curve(label, back, norms, cell, style))
        panels.append((name, curves))
    return panels


EXPERIMENT = ex.Experiment(
    "task_grid",
    Config,
    load=lambda c: None,
    run=run,
    presets=PRESETS,
    summary=lambda _: "wrote results.json, results.md, accuracy.png, lengths.png and gradients.png",
)

if __name__ == "__main__":
    ex.main(EXPERIMENT)
