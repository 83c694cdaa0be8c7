"""A script that defines its flags under ``if __name__ == "__main__"`` (cost_curves.py, remat_memory.py,
profile_step.py, scaling.py), run as ``__main__`` in this process: its imports and JAX already loaded, so a test
pays for its work, not for a fresh interpreter."""

import runpy
import sys
from pathlib import Path

import pytest
from absl import flags, logging


def run_script(script: Path, capsys, *args: str) -> tuple[int, str, str]:
    """Runs ``script`` with ``args``: ``(exit status, stdout, stderr)``. Its flags are removed afterwards, so that
    the next run defines them again, and the log verbosity it sets (``command_line.quiet_logs``) is put back."""
    argv, sys.argv, verbosity = sys.argv, [str(script), *args], logging.get_verbosity()
    try:
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
        logging.set_verbosity(verbosity)
        for flag in list(flags.FLAGS.flags_by_module_dict().get(str(script), [])):  # absl names it by its path
            delattr(flags.FLAGS, flag.name)
    out, err = capsys.readouterr()
    return exit_.value.code or 0, out, err
