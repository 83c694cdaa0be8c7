"""An experiment's settings, declared once: default, help text, checks and meaning for resumes in one place.

A config is a frozen dataclass made by ``declare``. Each field is either a ``setting`` or a *block*: another
declared class (``Optimization``, ``Run``, ``Epochs``, ``Devices`` below), whose settings are the config's own
under their own names. An experiment gives each block its defaults::

    @config.declare
    class Config:
        hidden: int = config.setting(128, "Hidden size of every layer.", at_least=1)
        optimization: config.Optimization = config.Optimization(learning_rate=2e-3)
        run: config.Run = config.Run()

    Config(hidden=0)                  # ConfigError: --hidden must be at least 1, got 0
    config.define_flags(Config)       # --hidden, --optimizer, --learning_rate, ... each with its help text
    config.from_flags(Config, preset) # the defaults, then the preset, then every flag given on the command line
    config.flat(cfg)                  # {"hidden": 128, "optimizer": "adam", ...}: what flags.json records

Constructing a config checks every setting (its choices, bounds and own check) and then the class's
``validate`` method, if it has one, for rules that tie several settings together; a failure is one
``ConfigError`` line naming the flag. A ``fixed`` setting (the default) is one a checkpoint depends on: a rerun in
the same workdir must keep its value (``fixed_names``).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import typing
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from absl import flags

from seqjax import precision, train
from seqjax.cells import BUILTIN_CELLS, LINEAR_CELLS, cell_by_name
from seqjax.models.token_encoder import ENCODERS


class ConfigError(ValueError):
    """A setting with a value it cannot take: one line naming the flag."""


class Setting(NamedTuple):
    """What a setting declares besides its default (``setting``'s arguments)."""

    help: str
    choices: tuple | None
    at_least: float | None
    above: float | None
    at_most: float | None
    below: float | None
    check: Callable[[Any], Any] | None
    fixed: bool | Callable[[Any], bool]
    derive: Callable[[Any], Any] | None
    required: bool
    alias: str = ""


def setting(
    default: Any,
    help: str,
    *,
    choices: tuple | list | None = None,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
    check: Callable[[Any], Any] | None = None,
    fixed: bool | Callable[[Any], bool] = True,
    derive: Callable[[Any], Any] | None = None,
    required: bool = False,
    alias: str = "",
) -> Any:
    """A config field: its default, its help text and its checks.

    Args:
      default: the value when neither a preset nor a flag gives one. A tuple makes a list flag.
      help: the flag's help text (the choices are appended).
      choices: the values it may take (each item, for a tuple).
      at_least, above, at_most, below: bounds, inclusive and exclusive (each item, for a tuple).
      check: ``value -> anything``; raising ``ValueError`` refuses the value with its message.
      fixed: whether a checkpoint depends on it (a rerun in its workdir must keep it; the default), or a
        predicate of the whole config. False for what changes no number: logging, speed, reporting.
      derive: ``config -> value`` used when the value is empty (``""``): a default that depends on others.
      required: an empty value is refused.
      alias: another flag name for the same setting ("": none).
    """
    spec = Setting(help, tuple(choices) if choices is not None else None, at_least, above, at_most, below, check,
                   fixed, derive, required, alias)  # fmt: skip
    return dataclasses.field(default=default, metadata={"setting": spec})


def declare(cls: type) -> type:
    """``cls`` as a frozen dataclass that takes every setting by its flat name and checks them when built.

    ``Config(hidden=16, learning_rate=1e-2)`` sets ``hidden`` and the ``learning_rate`` of its optimization
    block (a block's other settings keep the defaults the class gave it); then every setting is checked,
    then ``cls.validate`` runs if the class has one.
    """
    cross_check = cls.__dict__.get("validate")

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            spec = field.metadata.get("setting")
            if spec is None:
                continue
            value = getattr(self, field.name)
            if value == "" and spec.derive is not None:
                value = spec.derive(self)
                object.__setattr__(self, field.name, value)
            _check(field.name, spec, value)
        if cross_check is not None:
            cross_check(self)

    cls.__post_init__ = __post_init__
    cls = dataclasses.dataclass(frozen=True)(cls)
    fields_init = cls.__init__

    def __init__(self, **values: Any) -> None:
        arguments = {}
        for field in dataclasses.fields(cls):
            block = field.default
            if dataclasses.is_dataclass(block):
                if dataclasses.is_dataclass(values.get(field.name)):  # a whole block (a block and a setting may
                    block = values.pop(field.name)  # share a name: Epochs.epochs)
                inner = {f.name: values.pop(f.name) for f in _all_fields(type(block)) if f.name in values}
                arguments[field.name] = _with(block, inner) if inner else block
            elif field.name in values:
                arguments[field.name] = values.pop(field.name)
        if values:
            raise ConfigError(f"unknown setting --{sorted(values)[0]}")
        fields_init(self, **arguments)

    cls.__init__ = __init__
    return cls


def _all_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of a declared class and, recursively, of its blocks."""
    found = []
    for field in dataclasses.fields(cls):
        found.append(field)
        if dataclasses.is_dataclass(field.default):
            found.extend(_all_fields(type(field.default)))
    return found


def _with(block: Any, values: Mapping[str, Any]) -> Any:
    """``block`` with some of its settings (by flat name, its own blocks' included) changed."""
    return type(block)(**{**{f.name: getattr(block, f.name) for f in dataclasses.fields(block)}, **values})


def _check(name: str, spec: Setting, value: Any) -> None:
    flag = f"--{name}"
    if spec.required and value in ("", (), None):
        known = f": one of {', '.join(map(str, spec.choices))}" if spec.choices else ""
        raise ConfigError(f"{flag} is required{known}")
    items = value if isinstance(value, tuple) else (value,)
    if isinstance(value, tuple) and not value:
        raise ConfigError(f"{flag} needs at least one value")
    for item in items:
        if spec.choices is not None and item not in spec.choices and not (item == "" and not spec.required):
            raise ConfigError(f"{flag} must be one of {', '.join(map(str, spec.choices))}, got {item!r}")
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{flag} must be a finite number, got {item}")
            for bound, holds, words in (
                (spec.at_least, lambda v, b: v >= b, "at least"),
                (spec.above, lambda v, b: v > b, "above"),
                (spec.at_most, lambda v, b: v <= b, "at most"),
                (spec.below, lambda v, b: v < b, "below"),
            ):
                if bound is not None and not holds(item, bound):
                    raise ConfigError(f"{flag} must be {words} {bound:g}, got {item:g}")
        if spec.check is not None:
            try:
                spec.check(item)
            except ValueError as e:
                raise ConfigError(f"{flag}: {str(e).splitlines()[0]}") from None


# ---------------------------------------------------------------------------------------------- flat view


class Flat(NamedTuple):
    """One setting of a config class, wherever it sits: ``path`` is its attribute path (block, name)."""

    name: str
    path: tuple[str, ...]
    kind: Any  # the annotated type: bool, int, float, str or tuple[T, ...]
    default: Any
    spec: Setting


def settings(cls: type) -> list[Flat]:
    """Every setting of ``cls``, blocks' included, in declaration order; names are unique."""
    found, hints = [], typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(field.default):
            block = field.default
            for inner in settings(type(block)):
                found.append(inner._replace(path=(field.name, *inner.path), default=getattr(block, inner.name)))
        elif "setting" in field.metadata:
            found.append(Flat(field.name, (field.name,), hints[field.name], field.default, field.metadata["setting"]))
    names = [s.name for s in found]
    if len(names) != len(set(names)):
        raise TypeError(f"{cls.__name__} declares a setting twice: {sorted(n for n in names if names.count(n) > 1)}")
    return found


def flat(config: Any) -> dict[str, Any]:
    """``{name: value}`` of every setting of ``config`` (its blocks' included)."""
    return {s.name: _get(config, s.path) for s in settings(type(config))}


def defaults(cls: type) -> dict[str, Any]:
    """``{name: default}`` of every setting of ``cls`` as declared (derived defaults unresolved: ``""``)."""
    return {s.name: s.default for s in settings(cls)}


def _get(config: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        config = getattr(config, part)
    return config


def build(cls: type, values: Mapping[str, Any] | None = None) -> Any:
    """``cls`` with the given settings (by flat name; lists become tuples) and the declared defaults for the rest.

    ``ConfigError`` for a name ``cls`` does not declare or a value a setting refuses.
    """
    return cls(**{name: tuple(v) if isinstance(v, list) else v for name, v in (values or {}).items()})


def replace(config: Any, **values: Any) -> Any:
    """``config`` with some settings changed (by flat name), checked again."""
    return build(type(config), {**flat(config), **values})


def fixed_names(config: Any) -> tuple[str, ...]:
    """The settings a checkpoint of ``config`` depends on: a rerun in its workdir must keep their values."""
    names = []
    for s in settings(type(config)):
        if s.spec.fixed(config) if callable(s.spec.fixed) else s.spec.fixed:
            names.append(s.name)
    return tuple(names)


# ---------------------------------------------------------------------------------------------- flags


def define_flags(cls: type, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """One absl flag per setting of ``cls``: its name, default and help; shown by the main script's ``--helpshort``.

    Values are checked when the config is built (``from_flags``), not by absl: one line, naming the flag.
    """
    for s in settings(cls):
        help_text = s.spec.help + (f" One of: {', '.join(map(str, s.spec.choices))}." if s.spec.choices else "")
        kind = typing.get_origin(s.kind) or s.kind
        define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                  str: flags.DEFINE_string, tuple: flags.DEFINE_list}[kind]  # fmt: skip
        default = [str(v) for v in s.default] if kind is tuple else s.default
        define(s.name, default, help_text, flag_values=flag_values, module_name=sys.argv[0])
        if s.spec.alias:
            flags.DEFINE_alias(s.spec.alias, s.name, flag_values=flag_values, module_name=sys.argv[0])


def from_flags(cls: type, preset: Mapping[str, Any] | None = None, flag_values: flags.FlagValues = flags.FLAGS) -> Any:
    """``cls`` from the declared defaults, then ``preset``, then every flag given on the command line."""
    values = dict(preset or {})
    for s in settings(cls):
        flag = flag_values[s.name]
        if flag.present:
            values[s.name] = _parsed(s, flag.value)
    return build(cls, values)


def _parsed(s: Flat, value: Any) -> Any:
    """A list flag's strings as the setting's item type (``ConfigError`` for one that is not)."""
    if typing.get_origin(s.kind) is not tuple:
        return value
    item_type = typing.get_args(s.kind)[0]
    try:
        return tuple(item_type(v) for v in value)
    except ValueError:
        raise ConfigError(f"--{s.name} must be a comma-separated list of {item_type.__name__}s, got {value}") from None


# ---------------------------------------------------------------------------------------------- shared settings

CELL_HELP = (
    f"Recurrent cell: {', '.join(BUILTIN_CELLS + LINEAR_CELLS)}; or your own, 'path/to/file.py:attr' (e.g. "
    "examples/my_cells.py:indrnn) or 'module:attr' (the module on PYTHONPATH)."
)


def cell(default: str = "lstm", help: str = CELL_HELP) -> Any:
    """The ``--cell`` setting of a script that trains one model: a name ``seqjax.cells.cell_by_name`` builds; a
    checkpoint depends on it."""
    return setting(default, help, check=one_cell, fixed=True)


def one_cell(name: str) -> None:
    """``ValueError`` unless ``name`` is one cell ``cell_by_name`` builds (several, comma-separated, are refused)."""
    if "," in name:
        raise ValueError(
            f"one cell per model, got {name!r} (gradient_flow, long_dependency, task_grid and the benchmarks take "
            "several)"
        )
    cell_by_name(name)


def cells(
    default: tuple[str, ...],
    help: str,
    check: Callable[[str], Any] = cell_by_name,
    fixed: bool | Callable[[Any], bool] = True,
) -> Any:
    """The ``--cells`` setting of a script that compares several cells (each checked by ``check``), also given as
    ``--cell``: one flag spelling names the cell in every script."""
    return setting(default, f"{help} (--cell is the same flag.)", check=check, fixed=fixed, alias="cell")


# ---------------------------------------------------------------------------------------------- shared blocks

DECAYING = ("cosine", "exponential", "linear")  # schedules whose horizon is the run's length


def decays_over_the_run(config: Any) -> bool:
    """Whether the learning rate depends on the run's length (a decaying schedule): then so does a checkpoint."""
    return flat(config).get("schedule") in DECAYING


@declare
class Optimization:
    """How the parameters are updated: optimizer, learning-rate schedule, gradient clipping."""

    optimizer: str = setting("adam", "Optimizer.", choices=train.OPTIMIZERS)
    learning_rate: float = setting(1e-3, "Initial learning rate.", above=0)
    schedule: str = setting(
        "constant",
        "Learning-rate schedule: constant; cosine, exponential (to 0.1 x) or linear decay to the last update; "
        "epoch_decay: x --lr_decay per epoch from the end of epoch --decay_epoch on (Zaremba et al.).",
        choices=(*train.SCHEDULES, "epoch_decay"),
    )
    decay_epoch: int = setting(
        4, "--schedule=epoch_decay: the learning rate decays from the end of this epoch on.", at_least=1
    )
    lr_decay: float = setting(0.5, "--schedule=epoch_decay: learning-rate factor per epoch once decaying.", above=0)
    clipping: str = setting(
        "global_norm", "Gradient clipping (Pascanu et al.'s global norm, or each value).", choices=train.CLIPPING
    )
    clip: float = setting(5.0, "Clipping threshold (0: no clipping).", at_least=0)

    def clipper(self) -> train.Clipping:
        """The ``train.Clipping`` of these settings (``clip == 0``: none)."""
        return train.Clipping(self.clipping, self.clip) if self.clip > 0 else train.Clipping()


@declare
class Run:
    """Seed, metrics and checkpoints of a run."""

    log_every: int = setting(100, "Training metrics every this many updates.", at_least=1, fixed=False)
    checkpoint_every: int = setting(
        1000, "Checkpoint every this many updates (and after every evaluation).", at_least=1, fixed=False
    )
    seed: int = setting(0, "Random seed (initialisation, batch order, dropout).")
    steps_per_call: int = setting(
        1,
        "Updates per jitted call, run by a lax.scan inside it (never past an evaluation or checkpoint; one in a "
        "multi-process run): saves the call from Python and XLA:CPU's fresh temporaries of each call. The updates "
        "are the same.",
        at_least=1,
        fixed=False,
    )


@declare
class Epochs:
    """A run's length over a finite training set."""

    epochs: int = setting(10, "Training epochs.", at_least=1, fixed=decays_over_the_run)
    max_steps: int = setting(0, "Stop after this many updates (0: all epochs).", at_least=0, fixed=decays_over_the_run)


@declare
class Devices:
    """Where and in which precision the steps run."""

    num_devices: int = setting(
        0,
        "Split every batch over this many devices (data parallel; the batch size must divide); 0: all.",
        at_least=0,
        fixed=False,
    )
    shard_params_over: int = setting(
        0,
        "With several devices: split each parameter of at least this many elements (and its optimizer state) "
        "over them instead of copying it (large embeddings, softmax); 0: none.",
        at_least=0,
        fixed=False,
    )
    compute_dtype: str = setting(
        "float32",
        "bfloat16 for mixed precision: bfloat16 matrix products; float32 parameters, optimizer state, "
        "recurrent state and loss (for accelerators; slower on CPU).",
        choices=tuple(precision.COMPUTE_DTYPES),
        fixed=False,
    )


@declare
class Batches:
    """Training batches of examples of varied length (sentences, pairs): their size, bucketing and padding."""

    batch_size: int = setting(64, "Examples per update.", at_least=1)
    bucket: bool = setting(True, "Batch examples of similar length together (less padding); batches still shuffled.")
    bucket_pool: int = setting(50, "With --bucket: sort pools of this many batches by length.", at_least=1)
    pad_multiple: int = setting(
        8, "Pad each batch to a multiple of this many steps (bounds the compiled shapes).", at_least=1, fixed=False
    )
    eval_batch_size: int = setting(256, "Examples per batch when evaluating (speed only).", at_least=1, fixed=False)


@declare
class Encoder:
    """What reads a sentence's token vectors: ``num_layers`` recurrent layers of a cell, or self-attention blocks."""

    encoder: str = setting(
        "rnn", "rnn: layers of --cell; transformer: self-attention blocks of width --hidden.", choices=ENCODERS
    )
    cell: str = cell()
    num_layers: int = setting(1, "Stacked recurrent layers, or Transformer blocks.", at_least=1)
    hidden: int = setting(128, "Hidden size of every layer (per direction).", at_least=1)
    bidirectional: bool = setting(
        False, "Read each layer's input in both directions (--encoder=rnn; self-attention reads both ways)."
    )
    num_heads: int = setting(4, "--encoder=transformer: attention heads (must divide --hidden).", at_least=1)
    mlp_ratio: int = setting(4, "--encoder=transformer: the feed-forward size is mlp_ratio * --hidden.", at_least=1)

    def validate(self):
        if self.encoder == "transformer" and self.hidden % self.num_heads:
            raise ConfigError(f"--encoder=transformer: --hidden={self.hidden} is not divisible by --num_heads")

    def model_fields(self) -> dict[str, Any]:
        """These settings as the classifier's and tagger's model configs name them (the Transformer reads both
        ways by itself: ``bidirectional`` is the recurrent layers')."""
        return dict(encoder=self.encoder, cell=self.cell, num_layers=self.num_layers, hidden_size=self.hidden,
                    bidirectional=self.bidirectional and self.encoder == "rnn", num_heads=self.num_heads,
                    mlp_ratio=self.mlp_ratio)  # fmt: skip
