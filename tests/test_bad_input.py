"""Bad input, typed as a user types it: each flag or file gets one line naming it and what was expected, raised
before the workdir is touched (``experiment.run_command``, main's work in this process); then the command line
itself (a subprocess per script kind) turns such an error into that one line on stderr and exit status 1."""

import json
import subprocess
import sys
from pathlib import Path

import gradient_flow
import hello
import language_model
import long_dependency
import pytest
import sentiment
import tagging
import translation
import word2vec

from seqjax import command_line
from seqjax import experiment as ex

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A character corpus, a word corpus, a regular file and a read-only directory."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "chars.txt").write_text("the cat sat on the mat. " * 200)
    (root / "words.txt").write_text("a b c d e f\n" * 50)
    (root / "file").write_text("not a directory\n")
    return root


def _cases(files: Path) -> list[tuple]:
    """(experiment, flags, what the line must name)."""
    chars = [f"--data={files / 'chars.txt'}", "--corpus=chars", "--hidden=8", "--num_layers=1", "--batch_size=2"]
    words = [f"--corpus={files / 'words.txt'}", "--min_count=1", "--dim=4"]
    return [
        (hello, ["--hidden=abc"], "--hidden=abc"),
        (hello, ["--hidden=0"], "--hidden"),
        (hello, ["--cell=lstn"], "--cell"),
        (hello, ["--learning_rate=-1"], "--learning_rate"),
        (hello, ["--epochs=0"], "--epochs"),
        (hello, ["--nonexistent_flag=1"], "nonexistent_flag"),
        (hello, ["--seed=1.5"], "--seed"),
        (hello, ["--steps_per_call=4"], "--steps_per_call=4"),
        (hello, [f"--workdir={files / 'file' / 'run'}"], "--workdir"),
        (hello, [f"--workdir={files / 'file'}"], "--workdir"),
        (language_model, [*chars, "--valid_fraction=0"], "--valid_fraction"),
        (language_model, [*chars, "--valid_fraction=1"], "--valid_fraction"),
        (language_model, [*chars, "--bptt=5000"], "--bptt"),
        (language_model, [*chars, "--reset_at=<eos>"], "--reset_at"),
        (language_model, [*chars, "--model=transformer", "--reset_at=a"], "--reset_at"),
        (language_model, [*chars, "--eval_batch_size=100000"], "--eval_batch_size"),
        (language_model, [*chars, "--preset=huge"], "--preset"),
        (language_model, [*chars, "--model=transformer", "--num_heads=3"], "--num_heads"),
        (language_model, ["--corpus=chars", f"--data={files / 'missing.txt'}"], "missing.txt"),
        (language_model, ["--corpus=ptb_words", f"--data={files}"], "ptb"),
        (word2vec, [*words, "--encoding=foo-8"], "--encoding"),
        (word2vec, [f"--corpus={files / 'missing.txt'}"], "missing.txt"),
        (word2vec, [*words, "--sample=1"], "--sample"),
        (word2vec, [*words, "--kernel=native", "--loss=softmax"], "--kernel=native"),
        (gradient_flow, ["--seq_len=1"], "--seq_len"),
        (gradient_flow, ["--cells=rnn,lstn"], "--cells"),
        (gradient_flow, ["--recurrent_scale=x"], "--recurrent_scale"),
        (long_dependency, ["--cells=gru", "--seq_lens=0"], "--seq_lens"),
        (sentiment, [f"--data={files / 'missing'}"], "missing"),
        (tagging, [f"--data={files / 'missing'}"], "missing"),
        (translation, [f"--data={files / 'missing'}"], "missing"),
    ]


def test_every_bad_flag_or_file_is_one_line_naming_it_and_nothing_is_written(files, tmp_path):
    failures = []
    for i, (module, args, named) in enumerate(_cases(files)):
        out = tmp_path / f"run{i}"
        given = any(a.startswith("--workdir") for a in args)
        argv = [f"{module.__name__}.py", *([] if given else [f"--workdir={out}"]), *args]
        try:
            ex.run_command(module.EXPERIMENT, argv)
            failures.append(f"{' '.join(argv)}: accepted")
        except command_line.BAD_INPUT as e:
            line = str(e)
            if "\n" in line.strip() or named not in line:
                failures.append(f"{' '.join(argv)}: {line!r} (expected one line naming {named})")
        if out.exists():
            failures.append(f"{' '.join(argv)}: wrote {sorted(p.name for p in out.iterdir())}")
    assert not failures, "\n".join(failures)


def _script(path: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / path), *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("script", "args", "named"),
    [
        ("experiments/hello.py", ["--hidden=abc"], "--hidden=abc"),  # absl cannot parse it
        ("experiments/hello.py", ["--hidden=0"], "--hidden"),  # the config refuses it
        ("experiments/sample.py", ["--run=/nonexistent", "--prime=h"], "/nonexistent"),  # app.UsageError
        ("benchmarks/fused_vs_scan.py", ["--shapes=1x2"], "--shapes"),  # a flag validator
    ],
)
def test_the_command_line_prints_that_one_line_and_exits_1(tmp_path, script, args, named):
    workdir = [] if "sample" in script else [f"--workdir={tmp_path / 'run'}"]
    proc = _script(script, *args, *workdir)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"{Path(script).name}: ") and named in proc.stderr
    assert not (tmp_path / "run").exists()


def test_a_benchmark_refuses_a_workdir_measured_with_other_flags(tmp_path):
    """A benchmark's workdir holds the results of its flags: another measurement there is refused, not mixed in."""
    record = {"experiment": "fused_vs_scan", "flags": {"cells": ["lstm"], "shapes": ["8x8x8"], "steps": 20}}
    (tmp_path / "flags.json").write_text(json.dumps(record))
    proc = _script("benchmarks/fused_vs_scan.py", f"--workdir={tmp_path}", "--cells=lstm", "--shapes=8x8x16")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "holds a run made with --shapes=8x8x8, this run has --shapes=8x8x16" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flags.json"]


def test_help_still_prints_the_usage():
    proc = _script("experiments/hello.py", "--helpshort")
    assert "--hidden" in proc.stdout and "Try --helpfull" in proc.stdout
