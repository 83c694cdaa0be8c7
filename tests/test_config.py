"""seqjax.config: a setting declared once is a flag with its help, a default, a check and a resume rule."""

import captioning
import pytest
from absl import flags
from refusals import refusal

from seqjax import config
from seqjax import experiment as ex


def _no_big_mode(value: str) -> None:
    if value == "big":
        raise ValueError("big is not a mode here")


@config.declare
class Toy:
    hidden: int = config.setting(8, "Hidden size of the toy.", at_least=1)
    rate: float = config.setting(0.5, "A rate.", at_least=0, below=1, fixed=False)
    cells: tuple[str, ...] = config.setting(("rnn",), "Cells to try.", check=config.cell_by_name)
    scales: tuple[float, ...] = config.setting((1.0,), "Scales.", above=0)
    mode: str = config.setting("a", "Mode.", choices=("a", "b", "big"), check=_no_big_mode)
    data: str = config.setting("", "Data; default: the mode's own.", derive=lambda c: f"data/{c.mode}")
    optimization: config.Optimization = config.Optimization(learning_rate=0.1)
    epochs: config.Epochs = config.Epochs(epochs=3)

    def validate(self):
        if self.mode == "b" and self.hidden > 4:
            raise config.ConfigError("--mode=b needs --hidden of at most 4")


def parsed(*argv, preset=None):
    values = flags.FlagValues()
    config.define_flags(Toy, values)
    values(["toy", *argv])
    return config.from_flags(Toy, preset, values), values


def test_every_setting_is_a_flag_with_its_declared_help_and_default():
    toy, values = parsed()
    assert values["hidden"].help == "Hidden size of the toy." and values["hidden"].default == 8
    assert values["mode"].help == "Mode. One of: a, b, big."
    assert values["cells"].default == ["rnn"] and values["scales"].default == ["1.0"]  # list flags hold strings
    # a block's settings are flags of their own names, with the block's help and the experiment's defaults
    assert values["learning_rate"].default == 0.1 and values["learning_rate"].help == "Initial learning rate."
    assert values["epochs"].default == 3 and "clip" in values and "optimization" not in values
    assert toy == Toy() and toy.optimization.learning_rate == 0.1 and toy.data == "data/a"


def test_flags_are_read_back_with_their_types_and_a_preset_under_explicit_flags():
    argv = ("--hidden=3", "--cells=rnn,gru", "--scales=3,0.2", "--learning_rate=0.2", "--rate=0.25")
    toy, _ = parsed(*argv, preset={"hidden": 2, "mode": "b", "epochs": 7})
    assert (toy.hidden, toy.mode, toy.rate, toy.cells, toy.scales) == (3, "b", 0.25, ("rnn", "gru"), (3.0, 0.2))
    assert toy.optimization.learning_rate == 0.2 and toy.epochs.epochs == 7  # the preset's, below the flags
    assert toy.data == "data/b"  # derived from the mode it ended with
    assert config.flat(toy)["learning_rate"] == 0.2 and config.flat(toy)["cells"] == ("rnn", "gru")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hidden=0"], "--hidden must be at least 1, got 0"),
        (["--rate=1"], "--rate must be below 1, got 1"),
        (["--mode=c"], "--mode must be one of a, b, big, got 'c'"),
        (["--mode=big"], "--mode: big is not a mode here"),
        (["--cells=rnn,elman"], "--cells: unknown cell 'elman'"),
        (["--scales=1,x"], "--scales must be a comma-separated list of floats"),
        (["--scales=1,-2"], "--scales must be above 0, got -2"),
        (["--mode=b", "--hidden=5"], "--mode=b needs --hidden of at most 4"),
        (["--learning_rate=0"], "--learning_rate must be above 0, got 0"),
        (["--optimizer=sgdd"], "--optimizer must be one of sgd, momentum, adam, rmsprop, adagrad, got 'sgdd'"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_flag(argv, message):
    with pytest.raises(config.ConfigError) as error:
        parsed(*argv)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_configs_built_in_code_take_flat_names_and_are_checked_the_same_way():
    toy = Toy(hidden=3, learning_rate=0.3, epochs=5)
    assert toy.optimization == config.Optimization(learning_rate=0.3)  # the block's other settings: the defaults
    assert toy.epochs == config.Epochs(epochs=5)
    assert config.replace(toy, max_steps=9).epochs == config.Epochs(epochs=5, max_steps=9)
    assert config.build(Toy, {"cells": ["gru"]}).cells == ("gru",)
    with pytest.raises(config.ConfigError, match=r"^unknown setting --nope$"):
        Toy(nope=1)
    with pytest.raises(config.ConfigError, match=r"^--hidden must be at least 1"):
        config.replace(toy, hidden=0)


def test_the_settings_a_checkpoint_depends_on():
    fixed = set(config.fixed_names(Toy()))
    assert {"hidden", "cells", "mode", "data", "learning_rate", "clip"} <= fixed
    assert not {"rate", "epochs", "max_steps"} & fixed  # a constant rate: more epochs continue the run
    assert {"epochs", "max_steps"} <= set(config.fixed_names(Toy(schedule="cosine")))  # a decay over the run


def test_an_experiment_shows_its_flags_and_refuses_a_bad_one_in_one_line(tmp_path):
    """The flags main defines, as ``--helpshort`` shows them (the script's own module's help), and a refusal
    (tests/test_bad_input.py: the command line prints it alone on stderr and exits 1)."""
    values = flags.FlagValues()
    ex.define_flags(captioning.EXPERIMENT, values)
    shown = values.main_module_help()
    assert "--hidden: Hidden size of the decoder cell." in shown
    assert "--learning_rate: Initial learning rate." in shown and "(default: '0.002')" in shown
    out = tmp_path / "run"
    assert refusal(captioning, f"--workdir={out}", "--hidden=0") == "--hidden must be at least 1, got 0"
    assert not out.exists()
