"""experiments/language_model.py and experiments/sample.py end to end, on generated text and a slice of PTB."""

import json
import math
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import language_model
import numpy as np
import pytest
from refusals import refusal

from seqjax import config as config_lib
from seqjax import experiment as ex
from seqjax.data.text import join_tokens
from seqjax.models.sampling import sample

ROOT = Path(__file__).resolve().parents[1]
PTB = ROOT.parent / "shared" / "data" / "ptb"
TINY_CONFIG = dict(
    corpus="chars",
    cell="gru",
    num_layers=1,
    hidden=16,
    bptt=8,
    batch_size=4,
    optimizer="adam",
    learning_rate=0.01,
    decay_epoch=10,
    eval_bptt=16,
    log_every=10,
    steps_per_call=1,
)  # fmt: skip  (one compiled step: several per call have their own test)


def cli(script, *args):
    command = [sys.executable, str(ROOT / "experiments" / script), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def markov_text(path: Path, length: int = 3000) -> Path:
    """Text from a fixed 5-symbol Markov chain: learnable, but not copyable."""
    rng = np.random.default_rng(0)
    symbols, transitions = "abcd\n", rng.dirichlet(np.full(5, 0.3), size=5)
    state, chars = 0, []
    for _ in range(length):
        state = rng.choice(5, p=transitions[state])
        chars.append(symbols[state])
    path.write_text("".join(chars))
    return path


def results(workdir: Path) -> dict:
    return json.loads((workdir / "results.json").read_text())


def train_in_process(out: Path, text: Path, epochs: int) -> None:
    """The language-model experiment on TINY_CONFIG, in this process (the runs share one compilation)."""
    config = language_model.Config(data=str(text), epochs=epochs, **TINY_CONFIG)
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam: b ** count with an int32 count
        ex.run(language_model.EXPERIMENT, config, out)


def test_char_model_learns_resumes_exactly_and_samples(tmp_path):
    text = markov_text(tmp_path / "text.txt")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_in_process(straight, text, epochs=2)
    for epochs in (1, 2):
        train_in_process(resumed, text, epochs=epochs)
    first, second = results(straight), results(resumed)
    assert [h["epoch"] for h in first["history"]] == [1.0, 2.0]
    assert first["valid"]["nats"] < 0.9 * math.log(5)  # below the uniform guess over the 5 symbols
    assert first["history"][-1]["valid_nats"] < first["history"][0]["valid_nats"]
    assert second["valid"] == first["valid"] and second["steps"] == first["steps"]  # resumed == straight, bit for bit
    assert first["train_tokens_per_s"] > 0 and "test" not in first
    assert (straight / "valid_curve.png").stat().st_size > 0

    # Reproducible from --seed through the checkpoint: the CLI's text equals the same sample drawn here
    # (that seeds differ is tested in tests/test_lm.py).
    proc = cli("sample.py", f"--run={straight}", "--prime=ab", "--length=40", "--seed=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout[:-1]  # print's newline
    assert text.startswith("ab") and len(text) == 42 and set(text) <= set("abcd\n")
    model, fmt, vocab, params, _ = language_model.load_trained(straight)
    tokens = sample(model, params, jnp.asarray(vocab.encode(["a", "b"])), jax.random.key(1), length=40)
    assert join_tokens(["a", "b", *vocab.decode(tokens)], fmt) == text


def test_several_updates_per_call_train_bit_for_bit_as_one_per_call(tmp_path):
    """--steps_per_call runs updates in a lax.scan inside one call: the same losses, norms and parameters."""
    text = markov_text(tmp_path / "text.txt", length=1500)
    runs = {}
    for n in (1, 4):
        out = tmp_path / f"per_call_{n}"
        config = language_model.Config(data=str(text), epochs=1, **{**TINY_CONFIG, "log_every": 3, "steps_per_call": n})
        with jax.numpy_dtype_promotion("standard"):
            ex.run(language_model.EXPERIMENT, config, out)
        lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        runs[n] = [{k: v for k, v in line.items() if "_s" not in k and "per_s" not in k} for line in lines]
        runs[n, "valid"] = results(out)["valid"]
    assert len(runs[1]) > 3 and runs[1] == runs[4]
    assert runs[1, "valid"] == runs[4, "valid"]


def command(*args: str) -> None:
    """language_model.py's work on ``args`` in this process (``experiment.run_command``)."""
    with jax.numpy_dtype_promotion("standard"):
        ex.run_command(language_model.EXPERIMENT, ["language_model.py", *args])


def test_preset_then_explicit_flags(tmp_path):
    text = markov_text(tmp_path / "text.txt", 600)
    workdir = tmp_path / "run"
    command("--preset=zaremba_small", f"--workdir={workdir}", f"--data={text}", "--corpus=chars", "--hidden=8",
            "--max_steps=2", "--eval_bptt=50", "--compute_dtype=bfloat16")  # fmt: skip
    flags = json.loads((workdir / "flags.json").read_text())["flags"]
    chosen = (flags["hidden"], flags["bptt"], flags["clip"], flags["optimizer"], flags["corpus"])
    assert chosen == (8, 20, 5.0, "sgd", "chars")  # explicit flags win, the preset fills the rest
    assert flags["compute_dtype"] == "bfloat16"  # mixed precision end to end (its numbers: tests/test_precision.py)
    assert results(workdir)["steps"] == 2 and 0 < results(workdir)["valid"]["nats"] < 5


def test_bad_data_is_refused_in_one_line_before_anything_is_written(tmp_path):
    workdir = tmp_path / "run"
    line = refusal(language_model, f"--workdir={workdir}", f"--data={tmp_path / 'nowhere'}", "--corpus=ptb_words")
    assert f"{tmp_path / 'nowhere'}: no such directory" in line and not workdir.exists()
    assert "unknown cell 'elman'" in refusal(language_model, f"--workdir={workdir}", "--cell=elman")
    line = refusal(language_model, f"--workdir={workdir}", "--compute_dtype=float16")
    assert "--compute_dtype must be one of float32, bfloat16" in line and not workdir.exists()
    proc = cli("sample.py", f"--run={tmp_path}", "--prime=a")
    assert proc.returncode != 0 and "no flags.json" in proc.stderr


@pytest.mark.skipif(not PTB.is_dir(), reason=f"{PTB} not present (the shared PTB data)")
def test_a_slice_of_ptb_end_to_end(tmp_path, capsys):
    data = tmp_path / "ptb"
    data.mkdir()
    for split, lines in (("train", 400), ("valid", 40), ("test", 40)):
        source = (PTB / "ptb.train.txt").read_text().splitlines(keepends=True)  # every split from train: one vocabulary
        start = {"train": 0, "valid": 0, "test": 200}[split]
        (data / f"ptb.{split}.txt").write_text("".join(source[start : start + lines]))
    workdir = tmp_path / "run"
    command("--preset=zaremba_small", f"--workdir={workdir}", f"--data={data}", "--hidden=16", "--epochs=1",
            "--eval_batch_size=4")  # fmt: skip
    out = results(workdir)
    vocab = len(json.loads((workdir / "vocab.json").read_text())["tokens"])
    assert 1 < out["test"]["perplexity"] < vocab and out["valid"]["perplexity"] < vocab
    assert "test perplexity" in capsys.readouterr().out
    # Word-level sampling from the run's checkpoint (the sample.py CLI is run in the character test above).
    model, fmt, vocab, params, _ = language_model.load_trained(workdir)
    prime = ["the", "company"]
    tokens = sample(model, params, jnp.asarray(vocab.encode(prime)), jax.random.key(0), length=5, top_k=10)
    assert join_tokens(prime + vocab.decode(tokens), fmt).startswith("the company ") and len(tokens) == 5


def test_zaremba_learning_rate_schedule():
    """lr * decay ** max(e + 1 - decay_epoch, 0) in epoch e: constant for 4 epochs, then halved every epoch."""
    config = config_lib.build(language_model.Config, language_model.PRESETS["zaremba_small"])
    schedule = ex.schedule(config.optimization, steps_per_epoch=10, num_steps=130)
    rates = [float(schedule(step)) for step in (0, 39, 40, 49, 50, 129)]
    assert rates == [1.0, 1.0, 0.5, 0.5, 0.25, 0.5**9]
