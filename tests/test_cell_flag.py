"""One flag, ``--cell``, names the cell in every experiment: a built-in name, a user's ``path/to/file.py:attr``
(relative to the working directory) or ``module:attr`` (the module on ``PYTHONPATH``); the comparisons take several,
comma-separated (``--cells`` is the same flag there). Bad specs are one line naming the flag. The benchmarks' own
tests (test_benchmark.py, test_cost_curves.py, ...) give each benchmark a user's cell; scaling.py's is here."""

import csv
import os
from pathlib import Path

import gradient_flow
import hello
import jax
import long_dependency
import pytest
import task_grid
from absl import flags
from refusals import refusal

from seqjax import config as config_lib
from seqjax import experiment as ex

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _config(module, *args: str):
    """The config ``module``'s command line builds from ``args``."""
    flag_values = flags.FlagValues()
    ex.define_flags(module.EXPERIMENT, flag_values)
    flag_values([f"{module.__name__}.py", *args])
    return config_lib.from_flags(module.EXPERIMENT.config, flag_values=flag_values)


@pytest.mark.parametrize("module", [gradient_flow, long_dependency, task_grid])
def test_a_comparison_takes_its_cells_as_cell_or_cells(module):
    assert _config(module, "--cell=gru,examples/my_cells.py:indrnn").cells == ("gru", "examples/my_cells.py:indrnn")
    assert _config(module, "--cells=rnn").cells == ("rnn",)


def test_a_users_cell_by_its_module_or_its_file_from_another_working_directory(tmp_path, monkeypatch):
    """From a working directory that is not the repository's: the module on the path (as PYTHONPATH puts it) runs
    end to end (its curve's first row: the loss's own step); the file, by a path relative to that directory, is the
    cell the comparison takes. (tests/test_gradient_flow_experiment.py runs the file's cell end to end.)"""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.chdir(tmp_path)
    by_file = f"{os.path.relpath(EXAMPLES, tmp_path)}/my_cells.py:indrnn"
    assert by_file.startswith("..") and _config(gradient_flow, f"--cell=gru,{by_file}").cells == ("gru", by_file)
    args = ["gradient_flow.py", f"--workdir={tmp_path / 'run'}", "--cell=my_cells:indrnn", "--train_steps=0"]
    with jax.numpy_rank_promotion("allow"):  # IndRNN's u * h: u [h], h [b, h]
        ex.run_command(gradient_flow.EXPERIMENT, [*args, "--seq_len=3", "--hidden=2", "--batch=1", "--task=random"])
    with open(tmp_path / "run" / "gradient_norms.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["measure"] == "grad_norm" and r["steps_back"] == "0"]
    assert [(r["cell"], float(r["ratio"])) for r in rows] == [("my_cells:indrnn", 1.0)]


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("lstm,gru", "--cell: one cell per model, got 'lstm,gru'"),
        ("examples/no_such_file.py:indrnn", "--cell: cannot import cell 'examples/no_such_file.py:indrnn': no such "
         "file"),
        ("examples/my_cells.py:nope", "--cell: cannot import cell 'examples/my_cells.py:nope': examples/my_cells.py "
         "has no attribute 'nope'"),
        ("examples/my_cells.py:jnp", "--cell: 'examples/my_cells.py:jnp' is not a seqjax.cells.Cell (got module)"),
        ("my_cells_not_on_the_path:indrnn", "No module named 'my_cells_not_on_the_path' (put its directory on "
         "PYTHONPATH, or name its file: path/to/module.py:attribute)"),
    ],
)  # fmt: skip
def test_a_bad_cell_is_one_line_naming_the_flag(tmp_path, spec, says):
    assert says in refusal(hello, f"--workdir={tmp_path / 'run'}", f"--cell={spec}")
    assert not (tmp_path / "run").exists()


def test_a_bad_cell_among_several_names_the_comparisons_flag(tmp_path):
    line = refusal(long_dependency, f"--workdir={tmp_path / 'run'}", "--cell=gru,examples/my_cells.py:nope")
    assert line.startswith("--cells: cannot import cell 'examples/my_cells.py:nope'")


def test_the_scaling_benchmark_times_the_language_model_of_a_users_cell():
    """benchmarks/scaling.py --cell: the language model's cell, counted by hand: embedding V x H, IndRNN's w [H, H],
    u [H] and b [H], output H x V and V."""
    import scaling

    config = scaling.Config(cell="examples/my_cells.py:indrnn", hidden=2, num_layers=1, vocab=5)
    assert scaling._lm_config(config, batch_size=2).cell == "examples/my_cells.py:indrnn"
    assert scaling.num_params(config) == 5 * 2 + (2 * 2 + 2 + 2) + (2 * 5 + 5)
    assert scaling.model_summary(config).startswith("examples/my_cells.py:indrnn LM 1 x 2")
