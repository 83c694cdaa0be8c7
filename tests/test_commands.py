"""Every command README.md and docs/ show (``python experiments/X.py ...``, ``python benchmarks/X.py ...``) names
only flags its script defines: the flags an experiment's ``main`` makes (``experiment.define_flags``), or a script's
own list (``--helpxml``, tests/script_flags.py), against the documents' commands."""

import importlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags

from seqjax import experiment

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "launch" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"python ((?:experiments|benchmarks)/\w+\.py)((?:[^`|\n]|\\\n)*)")
ABSL = {"help", "helpfull", "helpshort", "helpxml", "flagfile", "undefok", "verbosity", "v", "logtostderr"}


def documented_commands() -> dict[str, list[tuple[str, str]]]:
    """``{script: [(where, argument string), ...]}`` for every command in the documents."""
    found: dict[str, list[tuple[str, str]]] = {}
    for document in DOCUMENTS:
        text = document.read_text()
        for match in COMMAND.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            arguments = match.group(2).replace("\\\n", " ").split("#")[0]  # a shell comment ends the command
            found.setdefault(match.group(1), []).append((f"{document.relative_to(ROOT)}:{line}", arguments))
    return found


def flag_names(arguments: str) -> list[str]:
    """The flags an argument string sets: ``--name=value``, ``--name``, ``--noname``."""
    words = shlex.split(arguments.replace("...", " "))
    return [word[2:].split("=", 1)[0] for word in words if word.startswith("--") and len(word) > 2]


def is_experiment(script: str) -> bool:
    return "\nEXPERIMENT = " in (ROOT / script).read_text()


def defined_flags(script: str, own_flags: dict[str, list[str]]) -> set[str]:
    """Every flag ``script`` defines (its own and absl's), and ``no<name>`` for its booleans."""
    if is_experiment(script):  # importing it defines no flag: main's, made here
        values = flags.FlagValues()
        experiment.define_flags(importlib.import_module(Path(script).stem).EXPERIMENT, values)
        names = set(ABSL) | set(values)
        return names | {f"no{name}" for name in values if isinstance(values[name], flags.BooleanFlag)}
    return set(ABSL) | set(own_flags[script])


COMMANDS = documented_commands()


def test_the_documents_show_commands_of_every_experiment():
    assert {"experiments/gradient_flow.py", "experiments/language_model.py", "benchmarks/benchmark.py"} <= set(COMMANDS)
    assert sum(len(v) for v in COMMANDS.values()) > 40


@pytest.fixture(scope="module")
def own_flags() -> dict[str, list[str]]:
    """The flags of the scripts that define their own, by ``--helpxml`` (tests/script_flags.py: one process)."""
    scripts = [script for script in sorted(COMMANDS) if not is_experiment(script)]
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "script_flags.py"), *scripts], capture_output=True,
                          text=True, timeout=300, check=False, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("script", sorted(COMMANDS))
def test_every_documented_flag_exists(script, own_flags):
    known = defined_flags(script, own_flags)
    unknown = [(where, name) for where, arguments in COMMANDS[script] for name in flag_names(arguments)
               if name not in known]  # fmt: skip
    assert not unknown, f"{script}: flags the documents use but the script does not define: {unknown}"
