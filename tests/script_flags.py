"""The flags of scripts that define their own (absl ``--helpxml``), many scripts in one process: test_commands.py's
driver, one JAX import instead of one per script.

    python tests/script_flags.py benchmarks/benchmark.py benchmarks/scaling.py ...

Runs each script as ``__main__`` with ``--helpxml`` (absl prints the flags and exits before ``main``), then removes
the flags the script itself defined, so the next script may define the same names (the flags of the modules it
imports stay, as those modules do). Prints ``{script: [name, ...]}`` as JSON, the
names of boolean flags also as ``no<name>``.
"""

import contextlib
import io
import json
import runpy
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from absl import app, flags


def helpxml_flags(script: str) -> list[str]:
    sys.argv = [script, "--helpxml"]
    sys.path.insert(0, str(Path(script).resolve().parent))  # the script imports its siblings by name
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.suppress(SystemExit):
        runpy.run_path(script, run_name="__main__")
    sys.path.pop(0)
    for flag in list(flags.FLAGS.flags_by_module_dict().get(script, [])):  # its own: absl names it by its path
        delattr(flags.FLAGS, flag.name)
    text = printed.getvalue()
    names = []
    for flag in ET.fromstring(text[text.index("<?xml") :]).iter("flag"):
        names.append(flag.findtext("name"))
        if flag.findtext("type") == "bool":
            names.append(f"no{names[-1]}")
    return names


if __name__ == "__main__":
    app.define_help_flags()  # once: absl defines them at the first app.run only
    print(json.dumps({script: helpxml_flags(script) for script in sys.argv[1:]}))
