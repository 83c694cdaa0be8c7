"""An experiment as seqjax runs it: a declared config, its data, what to train on it; one ``main`` for all.

An experiment script declares and hands over::

    EXPERIMENT = Experiment("captioning", Config, load=load_data, plan=plan, report=report)

    if __name__ == "__main__":
        main(EXPERIMENT)

``plan(config, data) -> Plan`` says what to train (initial parameters, loss, batches, evaluation);
``train`` turns a plan and the config's shared blocks (``seqjax.config``: optimization, run, epochs,
devices) into one ``runner.fit``; ``report(config, data, plan, fit, workdir) -> dict`` turns the fit into
``results.json`` (test numbers, figures). An experiment that is not one training run (a grid of runs, a
count-based model) gives ``run(config, data, workdir) -> dict`` instead of ``plan`` and ``report``.

``main`` makes a flag of every setting of the config (plus ``--workdir``, ``--preset`` when the experiment
has presets, and the flags of a multi-process run) and, in this order: builds the config from the flags,
joins the multi-process run, loads and checks the data, builds the plan, checks that the workdir is new or
holds a run of this experiment with the same fixed settings and a checkpoint that fits; only then takes
the workdir's lock (one writer per workdir), writes ``flags.json`` and trains. Every refusal is one line on
stderr (exit status 1) and leaves the workdir untouched.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import optax
from absl import flags
from jax.sharding import Mesh

from seqjax import checkpoints, command_line, distributed, parallel, precision, runner, train, workdir
from seqjax import config as config_lib
from seqjax.checkpoints import Checkpointer

RESULTS_JSON = "results.json"


class Plan(NamedTuple):
    """One training run of a standard experiment.

    Attributes:
      params: the initial parameters (from ``keys(seed)[0]``).
      loss: ``(params, batch, key) -> (loss, aux)``, or with ``model_state``
        ``(params, model_state, batch, key) -> (loss, (aux, model_state))`` (``train.make_training``). The same
        object for equal models (a cached factory), so runs in one process share the step's compilation.
      batches: ``k -> batch`` of update k, a function of k alone.
      steps_per_epoch: updates in one epoch.
      evaluate: ``params -> {name: value}``, after every epoch and after the last update; None: no evaluation.
      select: keep the state with the highest value of this metric in ``best/``; "": none.
      describe: the text of an evaluation's progress line; default: every metric.
      model_state: the initial state a stateful loss hands from step to step (truncated BPTT's carry).
      files: ``{name: write(path)}``, written into the workdir with ``flags.json`` (vocabularies).
      optimizer: the plan's own optimizer and schedule (``train.Optimizer``, the same object for equal settings:
        ``model_loss`` makes it), used instead of the config's optimization block, clipping included; None: the
        config's.
      traceable_batches: ``batches(k)`` also takes a traced int32 k (device arrays indexed by k), so the runner
        may run several updates per call (``--steps_per_call``); False: batches are drawn on the host.
    """

    params: Any
    loss: train.LossFn | train.StatefulLossFn
    batches: Callable[[int], Any]
    steps_per_epoch: int
    evaluate: Callable[[Any], Mapping[str, Any]] | None = None
    select: str = ""
    describe: Callable[[Mapping[str, Any]], str] | None = None
    model_state: Any = None
    files: Mapping[str, Callable[[Path], Any]] = {}
    optimizer: train.Optimizer | None = None
    traceable_batches: bool = False


class Experiment(NamedTuple):
    """An experiment: its name (recorded in ``flags.json``), declared config and data, and what it runs.

    Attributes:
      name: the experiment's name.
      config: its declared config class (``seqjax.config.declare``).
      load: ``config -> data``, read and checked (``DataError`` for bad data; nothing is written before).
      plan: ``(config, data) -> Plan``: a standard experiment (with ``report``).
      report: ``(config, data, plan, fit, workdir) -> results``, written to ``results.json``.
      run: ``(config, data, workdir) -> results``: an experiment that is not one standard run.
      presets: named sets of settings for ``--preset``; explicit flags override them.
      summary: ``results -> str``, the last line ``main`` prints; default: where the results went.
      workdir: the default of ``--workdir``; "": the flag is required.
    """

    name: str
    config: type
    load: Callable[[Any], Any]
    plan: Callable[[Any, Any], Plan] | None = None
    report: Callable[..., dict] | None = None
    run: Callable[[Any, Any, Path], dict] | None = None
    presets: Mapping[str, Mapping[str, Any]] = {}
    summary: Callable[[dict], str] | None = None
    workdir: str = ""


def keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """``(init_key, train_key)``: the parameters' key and the run's key, ``split(key(seed))``."""
    init_key, train_key = jax.random.split(jax.random.key(seed))
    return init_key, train_key


@functools.cache
def model_loss(factory: Callable[..., Callable], *model: Any) -> Callable:
    """``factory(*model)``, the same object for equal models: runs in one process then share the step's compilation."""
    return factory(*model)


def mesh(config: Any, batch_flag: str = "batch_size") -> Mesh | None:
    """The data mesh of ``--num_devices`` for batches of ``--batch_size`` (or ``batch_flag``) rows; None: one device
    in one process. ``ConfigError`` (one line) if the devices do not exist or the batch does not split over them."""
    if devices(config).num_devices == 1:
        return None
    try:
        return parallel.mesh_for(config.devices.num_devices, config_lib.flat(config)[batch_flag])
    except ValueError as e:
        raise config_lib.ConfigError(str(e).replace("--batch_size", f"--{batch_flag}")) from None


def devices(config: Any) -> config_lib.Devices:
    """``config``'s devices block; one device in float32 for a config without one."""
    return getattr(config, "devices", config_lib.Devices(num_devices=1))


def total_steps(config: Any, steps_per_epoch: int) -> int:
    """``epochs * steps_per_epoch``, or ``max_steps`` when that is smaller (and not 0)."""
    total = config.epochs.epochs * steps_per_epoch
    return min(total, config.epochs.max_steps) if config.epochs.max_steps else total


def schedule(optimization: config_lib.Optimization, steps_per_epoch: int, num_steps: int) -> optax.Schedule:
    """The learning rate at each update: ``train.schedule`` over ``num_steps``, or ``epoch_decay``:
    ``lr * lr_decay ** max(e + 1 - decay_epoch, 0)`` in epoch e (0-based), Zaremba et al.'s."""
    if optimization.schedule != "epoch_decay":
        return train.schedule(optimization.schedule, optimization.learning_rate, max(num_steps, 1))
    learning_rate, decay_epoch, lr_decay = optimization.learning_rate, optimization.decay_epoch, optimization.lr_decay

    def epoch_decay(step):
        decays = jax.numpy.maximum(step // steps_per_epoch + 1 - decay_epoch, 0).astype(jax.numpy.float32)
        return learning_rate * jax.numpy.float32(lr_decay) ** decays

    return epoch_decay


@functools.cache
def training(
    loss: Callable,
    optimization: config_lib.Optimization,
    compute_dtype: str,
    steps_per_epoch: int,
    num_steps: int,
    stateful: bool = False,
) -> train.Training:
    """The training step of ``loss`` under ``optimization`` (cached: equal runs in one process share it)."""
    rate = schedule(optimization, steps_per_epoch, num_steps)
    return train.make_training(
        loss,
        train.optimizer(optimization.optimizer, rate),
        optimization.clipper(),
        learning_rate=rate,
        stateful=stateful,
        compute_dtype=precision.compute_dtype(compute_dtype),
    )


@functools.cache
def own_training(
    loss: Callable, optimizer: train.Optimizer, compute_dtype: str, stateful: bool = False
) -> train.Training:
    """The training step of ``loss`` under a plan's own optimizer (cached as ``training``)."""
    return train.make_training(
        loss,
        optimizer.tx,
        learning_rate=optimizer.learning_rate,
        stateful=stateful,
        compute_dtype=precision.compute_dtype(compute_dtype),
    )


def plan_training(config: Any, plan: Plan) -> tuple[train.Training, int]:
    """The training step of ``plan`` under ``config``'s optimization (or the plan's own optimizer) and precision, and
    its number of updates."""
    num_steps = total_steps(config, plan.steps_per_epoch)
    stateful = plan.model_state is not None
    if plan.optimizer is not None:
        return own_training(plan.loss, plan.optimizer, devices(config).compute_dtype, stateful), num_steps
    step = training(plan.loss, config.optimization, devices(config).compute_dtype, plan.steps_per_epoch, num_steps,
                    stateful)  # fmt: skip
    return step, num_steps


def initial_state(config: Any, plan: Plan) -> train.TrainState:
    """The state before update 0 of ``plan`` under ``config``."""
    step, _ = plan_training(config, plan)
    return step.init(plan.params, keys(config.run.seed)[1], plan.model_state)


def train_plan(config: Any, plan: Plan, out: Path, state: train.TrainState | None = None) -> runner.Fit:
    """``runner.fit`` of ``plan`` with the optimizer, schedule, clipping, length, logging and devices of ``config``.

    ``state``: ``initial_state(config, plan)``, made here if not given (donated).
    """
    step, num_steps = plan_training(config, plan)
    state = initial_state(config, plan) if state is None else state
    evaluation = None
    if plan.evaluate is not None:
        evaluation = runner.Evaluation(
            plan.evaluate,
            every=plan.steps_per_epoch,
            steps_per_epoch=plan.steps_per_epoch,
            select=plan.select,
            describe=plan.describe,
        )
    options = runner.Options(
        log_every=config.run.log_every,
        checkpoint_every=config.run.checkpoint_every,
        mesh=mesh(config),
        shard_params_over=devices(config).shard_params_over,
        # A call cannot close over the arrays of several processes (their batches): one update per call there.
        steps_per_call=config.run.steps_per_call if jax.process_count() == 1 else 1,
    )
    return runner.fit(step, state, plan.batches, num_steps, out, evaluation=evaluation, options=options)


def restore_best(config: Any, plan: Plan, out: Path) -> train.TrainState:
    """The best state of ``plan``'s run in ``out`` (``runner.restore_best``)."""
    return runner.restore_best(out, initial_state(config, plan))


def restore_latest(config: Any, plan: Plan, out: Path) -> train.TrainState:
    """The latest state of ``plan``'s run in ``out``; ``FileNotFoundError`` if it has no checkpoint."""
    return checkpoints.restore(out, initial_state(config, plan))


def summary(fit: runner.Fit, plan: Plan, **per_step: int) -> dict[str, Any]:
    """The part of ``results.json`` every standard experiment shares: steps, epochs, parameters, the evaluation
    history, the training time, and for each ``X_per_step=n`` given, ``X_per_step`` and ``train_X_per_s``."""
    steps = int(fit.state.step)
    results = {
        "steps": steps,
        "epochs": steps / plan.steps_per_epoch,
        "steps_per_epoch": plan.steps_per_epoch,
        "parameters": sum(int(leaf.size) for leaf in jax.tree.leaves(fit.state.params)),
        "history": fit.history,
    }
    if fit.history:
        train_s = fit.history[-1]["train_s"]
        results["train_s"] = train_s
        for name, n in per_step.items():
            results[f"{name}_per_step"] = n
            results[f"train_{name}_per_s"] = steps * n / max(train_s, 1e-9)
    return results


def run(experiment: Experiment, config: Any, out: str | os.PathLike, data: Any = None) -> dict:
    """Runs ``experiment`` on ``config`` in ``out``; returns its results. ``main``'s work, and the tests' entry point.

    ``data``: ``experiment.load(config)``, loaded here if not given.
    """
    data = experiment.load(config) if data is None else data
    if experiment.run is not None:
        return experiment.run(config, data, Path(out))
    return run_plan(experiment, config, data, out)


def run_plan(experiment: Experiment, config: Any, data: Any, out: str | os.PathLike) -> dict:
    """The standard run: checks everything that can fail (the workdir, the plan, the devices, a checkpoint there)
    before writing anything; then, holding the workdir's lock, claims it, trains the plan and writes the report
    into ``results.json``."""
    out = Path(out)
    check_workdir(experiment, config, out)
    mesh(config)
    plan = experiment.plan(config, data)
    check_steps_per_call(experiment, config, plan)
    state = initial_state(config, plan)
    _check_checkpoint(out, state)
    distributed.sync(f"checked {out}")
    with workdir.lock(out):
        _claim(experiment, config, out)
        for name, write in plan.files.items():
            write(out / name)
        fit = train_plan(config, plan, out, state)
        results = experiment.report(config, data, plan, fit, out)
        workdir.write_json(out / RESULTS_JSON, results)
    return results


def check_steps_per_call(experiment: Experiment, config: Any, plan: Plan) -> None:
    """``ConfigError`` (one line) for ``--steps_per_call`` above 1 where ``plan``'s batches are drawn on the host."""
    n = config.run.steps_per_call
    if n > 1 and not plan.traceable_batches:
        raise config_lib.ConfigError(
            f"--steps_per_call={n}: {experiment.name} draws its batches on the host, one update per call; use 1"
        )


@contextlib.contextmanager
def claimed(experiment: Experiment, config: Any, out: str | os.PathLike) -> Iterator[Path]:
    """For an experiment's own ``run``: checks ``out``, then holds its lock and claims it while the block runs."""
    out = Path(out)
    check_workdir(experiment, config, out)
    distributed.sync(f"checked {out}")
    with workdir.lock(out):
        _claim(experiment, config, out)
        yield out


def _claim_arguments(experiment: Experiment, config: Any) -> tuple:
    """``workdir.claim``'s arguments after the directory: the name, the flags, the fixed ones and the defaults."""
    return (
        experiment.name,
        config_lib.flat(config),
        config_lib.fixed_names(config),
        config_lib.defaults(experiment.config),
    )


def check_workdir(experiment: Experiment, config: Any, out: Path) -> None:
    """``WorkdirError`` (one line) unless ``out`` is new, empty, or a run of ``experiment`` with ``config``'s fixed
    settings (a record that predates a setting ran with its default); writes nothing."""
    workdir.check_claim(out, *_claim_arguments(experiment, config))


def _claim(experiment: Experiment, config: Any, out: Path) -> None:
    workdir.claim(out, *_claim_arguments(experiment, config))


def _check_checkpoint(out: Path, template: train.TrainState) -> None:
    """``CheckpointMismatch`` if ``out`` holds a checkpoint that ``template`` cannot take (nothing is written)."""
    if not (out / "checkpoints").is_dir():
        return
    checkpointer = Checkpointer(out, every=1)
    try:
        checkpointer.check(template)
    finally:
        checkpointer.close()


# ---------------------------------------------------------------------------------------------- the command line

WORKDIR_HELP = "Output directory (rerunning the same command there resumes)."


class _ProcessFlags(NamedTuple):
    coordinator_address: flags.FlagHolder
    num_processes: flags.FlagHolder
    process_id: flags.FlagHolder
    distributed: flags.FlagHolder


class _Flags(NamedTuple):
    workdir: flags.FlagHolder
    preset: flags.FlagHolder | None
    process: _ProcessFlags


def define_flags(experiment: Experiment, flag_values: flags.FlagValues = flags.FLAGS) -> _Flags:
    """Every flag of ``experiment``'s command line: its settings', ``--workdir``, ``--preset`` (with presets) and
    a multi-process run's; shown by the main script's ``--helpshort``."""
    config_lib.define_flags(experiment.config, flag_values)
    mine = dict(flag_values=flag_values, module_name=sys.argv[0])
    workdir_flag = flags.DEFINE_string("workdir", experiment.workdir or None, WORKDIR_HELP, **mine)
    preset_flag = None
    if experiment.presets:
        known = ", ".join(experiment.presets)
        preset_flag = flags.DEFINE_string("preset", "", f"A published recipe ({known}); explicit flags override it.",
                                          **mine)  # fmt: skip
    return _Flags(workdir_flag, preset_flag, _define_process_flags(mine))


def main(experiment: Experiment) -> None:
    """The command-line entry point of ``experiment`` (see the module docstring)."""
    handles = define_flags(experiment)
    command_line.run(lambda argv: _command(experiment, handles, argv) and None)


def run_command(experiment: Experiment, argv: list[str]) -> dict:
    """``main``'s work on ``argv`` (``[script, *flags]``) in this process, with flags of its own: the tests' way to
    give bad input as a user types it. Raises what ``main`` turns into one line (``command_line.BAD_INPUT``, or
    ``ConfigError`` for a flag absl cannot parse)."""
    flag_values = flags.FlagValues()
    handles = define_flags(experiment, flag_values)
    try:
        argv = flag_values(argv)
    except flags.Error as e:
        raise config_lib.ConfigError(str(e)) from None
    return _command(experiment, handles, argv, flag_values)


def _command(experiment: Experiment, handles: _Flags, argv: list[str], flag_values=flags.FLAGS) -> dict:
    workdir_flag, preset_flag, process = handles
    if len(argv) > 1:
        raise config_lib.ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not workdir_flag.value:
        raise config_lib.ConfigError("--workdir is required: the run's output directory")
    preset = {}
    if preset_flag is not None and preset_flag.value:
        if preset_flag.value not in experiment.presets:
            raise config_lib.ConfigError(
                f"--preset must be one of {', '.join(experiment.presets)}, got {preset_flag.value!r}"
            )
        preset = experiment.presets[preset_flag.value]
    config = config_lib.from_flags(experiment.config, preset, flag_values)
    join_processes(process, config_lib.flat(config).get("num_devices"))
    results = run(experiment, config, workdir_flag.value)
    line = experiment.summary(results) if experiment.summary else "wrote results.json"
    if line:
        print(f"{line} into {workdir_flag.value}" if line.startswith("wrote") else line, flush=True)
    return results


def _define_process_flags(mine: dict) -> _ProcessFlags:
    """The flags of a multi-process run (``seqjax.distributed``), the same for every training script."""
    return _ProcessFlags(
        flags.DEFINE_string(
            "coordinator_address", "", "Multi-process run: host:port of process 0 (with --num_processes, "
            "--process_id).", **mine
        ),
        flags.DEFINE_integer("num_processes", 0, "Multi-process run: how many processes.", **mine),
        flags.DEFINE_integer("process_id", -1, "Multi-process run: this process's index, 0-based.", **mine),
        flags.DEFINE_bool(
            "distributed", False, "Join the multi-process run the cluster's environment describes (SLURM, Cloud "
            "TPU VM).", **mine
        ),
    )  # fmt: skip


def join_processes(process: _ProcessFlags, num_devices: int | None) -> None:
    """Joins the multi-process run the flags (or ``launch/local.py``'s environment) describe, if any; silences
    every process's progress but the first; ``ConfigError`` unless ``--num_devices`` devices exist."""
    try:
        joined = distributed.initialize(
            process.coordinator_address.value,
            process.num_processes.value,
            process.process_id.value,
            auto=process.distributed.value,
        )
        if joined and not distributed.is_primary():
            sys.stdout = open(os.devnull, "w")  # one progress log, process 0's; errors still reach stderr
        if num_devices is not None:
            parallel.data_mesh(num_devices)
    except ValueError as e:
        raise config_lib.ConfigError(str(e)) from None
