"""The absl ``main`` of a model-selecting experiment (tagging, translation, captioning): one shape for all.

The experiment module provides ``Config``, ``EXPERIMENT``, ``FIXED_FLAGS``, ``load_data(config)``,
``check(config, data)`` and ``run(config, out, data)``. ``main`` reads the config from the flags, joins
the multi-process run (if any), loads and checks the data before anything is written, claims the
workdir and runs; bad input the flags could not see (data, a foreign workdir, a checkpoint of another
model) ends in a one-line ``app.UsageError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import ModuleType

from absl import app, flags, logging

from seqjax import workdir
from seqjax.checkpoints import CheckpointMismatch
from seqjax.data.text import DataError
from seqjax.experiments import config_flags, distributed_flags


def quiet_orbax() -> None:
    """Warnings only, unless ``--verbosity`` was given: Orbax logs every checkpoint operation at INFO."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def model_selecting_main(
    experiment: ModuleType, workdir_flag: flags.FlagHolder, written: str
) -> Callable[[list[str]], None]:
    """The ``main`` for ``app.run``; it ends by printing ``wrote {written} into {workdir}``."""

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        quiet_orbax()
        config = config_flags.config_from_flags(experiment.Config)
        distributed_flags.start(config.num_devices, config.batch_size)
        try:
            data = experiment.load_data(config)  # bad data: nothing written
            experiment.check(config, data)
            out = workdir.claim(
                workdir_flag.value,
                experiment.EXPERIMENT,
                dataclasses.asdict(config),
                fixed=experiment.FIXED_FLAGS,
                defaults=dataclasses.asdict(experiment.Config()),
            )
            experiment.run(config, out, data)
        except (workdir.WorkdirError, CheckpointMismatch, DataError) as e:  # bad input the flags could not see
            raise app.UsageError(str(e)) from e
        print(f"wrote {written} into {workdir_flag.value}")

    return main
