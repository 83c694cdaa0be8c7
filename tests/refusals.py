"""Bad input given to an experiment in this process (``experiment.run_command``, main's work): the tests' cheap
way to check a refusal's line. tests/test_bad_input.py checks once per kind of script that the command line
prints that line alone and exits 1."""

import pytest

from seqjax import command_line
from seqjax import experiment as ex


def refusal(module, *args: str) -> str:
    """The one line ``module``'s command refuses ``args`` with (``module.EXPERIMENT``; ``args`` are its flags)."""
    with pytest.raises(command_line.BAD_INPUT) as error:
        ex.run_command(module.EXPERIMENT, [f"{module.__name__}.py", *args])
    line = str(error.value)
    assert "\n" not in line.strip(), line
    return line
