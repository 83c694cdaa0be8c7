"""absl flags made from an experiment's ``Config`` dataclass, and the ``Config`` read back from them.

Each field becomes ``--<name>`` with the field's default and type (bool, int, float or str) and the help
text ``help[name]``; numeric flags get a lower bound, 1 for the names in ``positive`` and 0 otherwise,
unless ``lower_bounds`` names another. A ``compute_dtype`` field gets a validator of its values
(``seqjax.precision.COMPUTE_DTYPES``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping

from absl import flags

from seqjax import precision

DEVICE_HELP = {
    "num_devices": "Split every batch over this many devices (data parallel; the batch size must divide); 0: all.",
    "shard_params_over": "With several devices: split each parameter of at least this many elements (and its "
    "optimizer state) over them instead of copying it (large embeddings, softmax); 0: none.",
    "compute_dtype": "float32, or bfloat16 for mixed precision: bfloat16 matrix products; float32 parameters, "
    "optimizer state, recurrent state and loss (for accelerators; slower on CPU).",
}  # the help of the device fields a training script's Config has (define_flags uses those it finds)

_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}


def define_flags(
    config_class: type,
    help: Mapping[str, str],
    positive: Collection[str] = (),
    lower_bounds: Mapping[str, float] | None = None,
    skip: Collection[str] = (),
) -> None:
    """Defines one flag per field of ``config_class`` except those in ``skip`` (defined by the caller)."""
    lower_bounds = lower_bounds or {}
    for field in dataclasses.fields(config_class):
        if field.name in skip:
            continue
        kind = type(field.default)
        extra = {}
        if kind in (int, float):
            extra["lower_bound"] = lower_bounds.get(field.name, 1 if field.name in positive else 0)
        _DEFINE[kind](field.name, field.default, help[field.name], **extra)
        if field.name == "compute_dtype":
            known = ", ".join(precision.COMPUTE_DTYPES)
            flags.register_validator(field.name, lambda v: v in precision.COMPUTE_DTYPES, f"--compute_dtype: {known}")


def config_from_flags(config_class: type, flag_values: flags.FlagValues = flags.FLAGS):
    """``config_class`` with every field set from its flag's value."""
    return config_class(**{field.name: flag_values[field.name].value for field in dataclasses.fields(config_class)})
