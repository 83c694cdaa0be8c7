"""experiments/lm_baselines.py end to end (KN and NNLM) on a generated PTB-format directory."""

import json
import math
from pathlib import Path

import jax
import lm_baselines
import numpy as np
import pytest
from refusals import refusal

from seqjax import config as config_lib
from seqjax import experiment as ex
from seqjax.baselines.ngram import KneserNey
from seqjax.data.corpus import load_corpus

WORDS = "the a cat dog sat ran on mat fast slowly big small".split()
TINY_NNLM = ["--context=2", "--embed=8", "--hidden=16", "--batch_size=32", "--learning_rate=0.01",
             "--eval_batch_size=64", "--log_every=10", "--checkpoint_every=10"]  # fmt: skip


def command(capsys, *args) -> str:
    """The script's work on ``args`` in this process (``experiment.run_command``): what it prints."""
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam: b ** count with an int32 count
        ex.run_command(lm_baselines.EXPERIMENT, ["lm_baselines.py", *args])
    return capsys.readouterr().out


def ptb_dir(path: Path) -> Path:
    """PTB-format splits from one Markov chain over 12 words and the sentence end: 13 tokens with <eos>."""
    rng = np.random.default_rng(0)
    end = len(WORDS)
    transitions = rng.dirichlet(np.full(end + 1, 0.2), size=end + 1)

    def sentence() -> str:
        words, state = [], end
        while len(words) < 20:
            state = rng.choice(end + 1, p=transitions[state])
            if state == end:
                break
            words.append(WORDS[state])
        return " " + " ".join(words) + " \n"  # PTB's own spacing

    path.mkdir()
    for split, count in (("train", 300), ("valid", 40), ("test", 40)):
        lines = [sentence() for _ in range(count)]
        if split == "train":
            lines.insert(0, " " + " ".join(WORDS) + " \n")  # every word in train, so valid and test encode
        (path / f"ptb.{split}.txt").write_text("".join(lines))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return ptb_dir(tmp_path_factory.mktemp("corpus") / "ptb")


def results(workdir: Path) -> dict:
    return json.loads((workdir / "results.json").read_text())


def test_kn_scores_every_token_of_each_split_as_one_stream(data, tmp_path, capsys):
    printed = command(capsys, "--model=kn", "--order=3", f"--data={data}", f"--workdir={tmp_path / 'kn'}")
    out = results(tmp_path / "kn")
    corpus = load_corpus("ptb_words", data)
    assert len(corpus.vocab) == 13
    model = KneserNey.fit([corpus.train], 13, order=3)
    for split in ("valid", "test"):
        ids = corpus.split(split)
        nll, count = model.nll([ids])
        assert out[split]["tokens"] == count == len(ids)
        assert out[split]["nats"] == pytest.approx(nll / count, rel=1e-12)
        assert 1 < out[split]["perplexity"] < 13
        assert f"{split} perplexity {out[split]['perplexity']:.2f}" in printed
    assert out["model"] == "kn" and out["order"] == 3 and out["fit_s"] >= 0


def test_nnlm_trains_and_evaluates(data, tmp_path, capsys):
    workdir = tmp_path / "nnlm"
    printed = command(capsys, "--model=nnlm", "--epochs=1", "--max_steps=30", f"--data={data}", f"--workdir={workdir}",
                      *TINY_NNLM)  # fmt: skip
    out = results(workdir)
    valid_tokens = len(load_corpus("ptb_words", data).valid)
    assert out["model"] == "nnlm" and out["steps"] == 30 and out["valid"]["tokens"] == valid_tokens
    for split in ("valid", "test"):
        assert math.isfinite(out[split]["perplexity"]) and 1 < out[split]["perplexity"] < 13  # below uniform
        assert f"{split} perplexity {out[split]['perplexity']:.2f}" in printed
    assert [h["step"] for h in out["history"]] == [30]
    assert {k.removeprefix("valid_"): v for k, v in out["history"][-1].items() if "valid_" in k} == out["valid"]
    assert out["train_s"] > 0 and (workdir / "checkpoints" / "30").is_dir()
    flags = json.loads((workdir / "flags.json").read_text())
    assert flags["experiment"] == "lm_baselines" and flags["flags"]["model"] == "nnlm"
    assert "--model=nnlm" in refusal(lm_baselines, "--model=kn", f"--data={data}", f"--workdir={workdir}")  # its own


def test_a_missing_data_directory_is_refused_in_one_line_before_anything_is_written(tmp_path):
    workdir = tmp_path / "run"
    for model in ("kn", "nnlm"):
        line = refusal(lm_baselines, f"--model={model}", f"--data={tmp_path / 'nowhere'}", f"--workdir={workdir}")
        assert f"{tmp_path / 'nowhere'}: no such directory" in line
        assert not workdir.exists()


def test_batches_are_a_fixed_permutation_per_epoch():
    steps_per_epoch = 10 // 3  # 3 steps, the tenth position left out of each epoch
    epochs = [np.concatenate([lm_baselines.batch_indices(k, 10, 3, seed=5) for k in range(e * 3, e * 3 + 3)])
              for e in range(3)]  # fmt: skip
    for order in epochs:
        assert len(order) == 3 * steps_per_epoch and len(set(order.tolist())) == 9 and set(order) <= set(range(10))
    assert not np.array_equal(epochs[0], epochs[1])
    lm_baselines.epoch_permutation.cache_clear()  # computed again from the step alone: the same batches
    np.testing.assert_array_equal(lm_baselines.batch_indices(4, 10, 3, seed=5), epochs[1][3:6])
    assert not np.array_equal(lm_baselines.batch_indices(4, 10, 3, seed=6), epochs[1][3:6])


def test_a_resumed_nnlm_run_equals_a_straight_one(data, tmp_path):
    """In one process: 16 steps straight, and 8 then 16 in another workdir (a checkpoint every 4 steps)."""
    corpus = load_corpus("ptb_words", data)
    config = lm_baselines.Config(model="nnlm", data=str(data), context=2, embed=4, hidden=8, batch_size=64, epochs=2,
                                 eval_batch_size=256, log_every=4, checkpoint_every=4)  # fmt: skip
    outcomes = []
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam: b ** count with an int32 count
        for name, steps in (("straight", [16]), ("resumed", [8, 16])):
            out = tmp_path / name
            for max_steps in steps:
                outcome = ex.run(lm_baselines.EXPERIMENT, config_lib.replace(config, max_steps=max_steps), out, corpus)
            outcomes.append(outcome)
    straight, resumed = outcomes
    assert straight["steps"] == resumed["steps"] == 16
    assert straight["valid"] == resumed["valid"] and straight["test"] == resumed["test"]
    assert [h["step"] for h in resumed["history"]] == [8, 16]
