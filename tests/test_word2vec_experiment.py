"""experiments/word2vec.py end to end on a generated two-topic corpus, plus a slice of PTB when present."""

import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import word2vec as experiment  # experiments/word2vec.py
from refusals import refusal

from seqjax import checkpoints, runner, workdir
from seqjax import config as config_lib
from seqjax import experiment as ex
from seqjax.checkpoints import Checkpointer
from seqjax.data.text import DataError
from seqjax.models import word2vec
from seqjax.models.word_vectors import load_word2vec
from seqjax.train import TrainState

ROOT = Path(__file__).resolve().parents[1]
PTB = ROOT.parent / "shared" / "data" / "ptb" / "ptb.train.txt"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two topics of 6 words (a0..a5, b0..b5); a sentence draws all its words from one topic."""
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(500):
        topic = "ab"[rng.integers(2)]
        lines.append(" ".join(f"{topic}{i}" for i in rng.integers(6, size=7)))
    path = tmp_path_factory.mktemp("w2v") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    """An analogy file whose answers are within-topic and a pairs file scored by topic."""
    path = tmp_path_factory.mktemp("eval")
    (path / "questions-words.txt").write_text(": family\na0 a1 b0 b1\na2 a3 b2 b3\nmalformed line\n")
    pairs = ["# word1\tword2\tscore", "# header"]
    pairs += [f"a{i}\ta{j}\t9" for i, j in [(0, 1), (2, 3), (4, 5)]]
    pairs += [f"a{i}\tb{j}\t1" for i, j in [(0, 1), (2, 3), (4, 5)]]
    pairs += ["a0\tzebra\t5"]  # out of vocabulary
    (path / "wordsim353.tsv").write_text("\n".join(pairs) + "\n")
    return path


def config(corpus, eval_dir, **overrides):
    tiny = dict(dim=16, min_count=1, sample=0.0, epochs=2, batch_size=64, alpha=0.05, restrict_vocab=100)
    return experiment.Config(corpus=str(corpus), eval_dir=str(eval_dir), **{**tiny, **overrides})


class Killed(Exception):
    """Stands for a kill: the process ends where this is raised."""


def kill_at_checkpoint(monkeypatch, epoch: int, saved: bool) -> None:
    """Makes a run end (``Killed``) at epoch ``epoch``'s checkpoint, just after saving it if ``saved``, else just
    before."""

    class Dying(Checkpointer):
        def save(self, state, force=False):
            if int(state.step) == epoch and not saved:
                raise Killed
            done = super().save(state, force)
            if int(state.step) == epoch:
                raise Killed
            return done

    monkeypatch.setattr(experiment, "Checkpointer", Dying)


def files(out: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``out``: its bytes and modification time."""
    return {str(p.relative_to(out)): (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}


def test_run_writes_vectors_evaluates_and_resumes(corpus, eval_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    run = config(corpus, eval_dir, optimizer="adam", alpha=0.02)  # adam: the optimizer state resumes too
    prepared = experiment.load_data(run)
    assert len(prepared.vocab) == 12 and prepared.raw_words == 3500
    kill_at_checkpoint(monkeypatch, epoch=1, saved=True)
    with pytest.raises(Killed):
        experiment.train(run, out, prepared, log=lambda _: None)
    monkeypatch.undo()
    # The rerun resumes after epoch 1 and trains only epoch 2.
    logged = []
    results = experiment.train(run, out, prepared, log=logged.append)
    assert logged[0] == "resuming after epoch 1" and logged[1].startswith("epoch 2: loss")
    assert results["started_at_epoch"] == 1 and [h["epoch"] for h in results["history"]] == [1, 2]
    vectors = load_word2vec(out / "vectors.bin", binary=True)
    assert vectors.words == prepared.vocab.words  # most frequent first
    np.testing.assert_allclose(load_word2vec(out / "vectors.txt", binary=False).vectors, vectors.vectors)
    pairs = results["evaluation"]["wordsim353"]
    assert pairs["spearman"] > 0.5 and pairs["oov_ratio"] == pytest.approx(1 / 7)
    analogy = results["evaluation"]["analogy_add"]
    assert analogy["questions"] == 2 and analogy["malformed"] == 1
    neighbours = experiment.query(vectors, "a0", topn=5)
    assert sum(w.startswith("a") for w, _ in neighbours) >= 4


def test_a_killed_run_resumes_with_every_epoch_in_its_history_once(corpus, eval_dir, tmp_path, monkeypatch):
    run = config(corpus, eval_dir)
    prepared = experiment.load_data(run)
    straight = experiment.run(run, prepared, tmp_path / "straight")
    out = tmp_path / "killed"
    kill_at_checkpoint(monkeypatch, epoch=2, saved=False)  # epoch 2's line is written, its checkpoint is not
    with pytest.raises(Killed):
        experiment.run(run, prepared, out)
    monkeypatch.undo()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "ep')  # a line torn by the kill
    resumed = experiment.run(run, prepared, out)
    assert resumed["started_at_epoch"] == 1
    epochs = lambda results: [(h["epoch"], h["examples"], h["mean_loss"]) for h in results["history"]]
    assert epochs(resumed) == epochs(straight) and len(epochs(straight)) == 2
    assert resumed["train_seconds"] > json.loads(lines[0])["train_seconds"]
    assert json.loads((out / "results.json").read_text())["history"] == resumed["history"]


def test_a_rerun_with_other_epochs_is_refused_and_touches_nothing(corpus, eval_dir, tmp_path):
    run = config(corpus, eval_dir, epochs=1)
    prepared = experiment.load_data(run)
    out = tmp_path / "run"
    experiment.run(run, prepared, out)
    before = files(out)
    with pytest.raises(workdir.WorkdirError, match="made with --epochs=1, this run has --epochs=2"):
        experiment.run(config_lib.replace(run, epochs=2), prepared, out)
    assert files(out) == before


def test_divergence_stops_at_its_update_and_keeps_the_finite_checkpoints(corpus, eval_dir, tmp_path, monkeypatch):
    run = config(corpus, eval_dir, epochs=3, alpha=0.05, kernel="jax")  # the pure-JAX update, patched below
    step = word2vec.sgd_step
    huge = lambda lr: jnp.where(lr < 0.016, jnp.float32(1e30), lr)  # epoch 3 starts at 0.0167 and decays

    def diverging(params, batch, noise, lr, negatives=0):
        return step(params, batch, noise, huge(lr), negatives)

    monkeypatch.setattr(word2vec, "sgd_step", diverging)
    out = tmp_path / "run"
    with pytest.raises(runner.NonFiniteError) as stopped:
        experiment.run(run, experiment.load_data(run), out)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    update = int(str(stopped.value).split()[1])
    before = sum(-(-line["examples"] // run.batch_size) for line in lines)
    assert str(stopped.value) == (
        f"update {update} of epoch 3 (update {before + update} of the run) gave a non-finite loss: stopped; "
        f"the last checkpoint is {out.absolute() / 'checkpoints' / '2'}"
    )
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["1", "2"]
    template = word2vec.init_params(jax.random.key(0), 12, run.dim)
    state = checkpoints.restore(out, TrainState(template, (), jnp.zeros((), jnp.int32), jax.random.key(0)))
    assert int(state.step) == 2 and all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state.params))
    assert not (out / "results.json").exists() and not (out / "vectors.bin").exists()


def test_a_batch_too_big_for_memory_and_an_unreadable_eval_dir_are_refused_before_the_workdir(
    corpus, eval_dir, tmp_path
):
    out = tmp_path / "run"
    huge = config(corpus, eval_dir, batch_size=10**12)
    with pytest.raises(config_lib.ConfigError, match=r"^--batch_size=1000000000000: .* lower --batch_size or "):
        ex.run(experiment.EXPERIMENT, huge, out)
    a_file = tmp_path / "eval.txt"
    a_file.write_text("not a folder\n")
    with pytest.raises(DataError, match=f"^--eval_dir: {re.escape(str(a_file))}: not a directory$"):
        ex.run(experiment.EXPERIMENT, config(corpus, a_file), out)
    latin = tmp_path / "latin"
    latin.mkdir()
    (latin / "wordsim353.tsv").write_bytes("caf\xe9\tcoffee\t8\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"^--eval_dir: .*wordsim353.tsv: not UTF-8 text"):
        ex.run(experiment.EXPERIMENT, config(corpus, latin), out)
    assert not out.exists()


def test_query_parsing():
    assert experiment.parse_query("king - man + woman") == ("similar", ["king", "woman"], ["man"])
    assert experiment.parse_query("paris") == ("similar", ["paris"], [])
    assert experiment.parse_query("good ~ great") == ("similarity", ["good", "great"], [])
    assert experiment.parse_query("well-known + x") == ("similar", ["well-known", "x"], [])
    for bad in ("- man", "a ~ b ~ c", "a ~", "king queen", "a * b", "", "a + ~", "a +- b"):
        with pytest.raises(ValueError, match="--query"):
            experiment.parse_query(bad)


def test_divergence_from_the_command_line_is_one_line_and_saves_nothing(corpus, tmp_path):
    out = tmp_path / "out"
    tiny = ["--min_count=1", "--dim=16", "--batch_size=64", "--epochs=2", "--eval_dir=/nonexistent"]
    with jax.numpy_dtype_promotion("standard"):
        line = refusal(experiment, f"--corpus={corpus}", f"--workdir={out}", "--alpha=1e30", *tiny)
    update = line.split()[1]
    assert line == (
        f"update {update} of epoch 1 (update {update} of the run) gave a non-finite loss: stopped; "
        "no checkpoint was saved"
    )
    assert not any((out / "checkpoints").iterdir()) and not (out / "metrics.jsonl").read_text()
    assert not (out / "results.json").exists() and not (out / "vectors.bin").exists()


def test_a_bad_corpus_is_one_line_and_leaves_no_workdir(tmp_path):
    rare = tmp_path / "rare.txt"
    rare.write_text("one two three\n")
    out = tmp_path / "out"
    assert f"{rare}: no word occurs min_count=5 times" in refusal(experiment, f"--corpus={rare}", f"--workdir={out}")
    assert not out.exists()
    assert "vectors.bin: no such file" in refusal(experiment, f"--workdir={out}", "--query=king - man")


@pytest.mark.skipif(not PTB.is_file(), reason=f"{PTB} not found (the shared data folder is absent)")
def test_a_slice_of_ptb_trains_end_to_end(tmp_path):
    lines = PTB.read_text().splitlines()[:3000]
    sliced = tmp_path / "ptb_slice.txt"
    sliced.write_text("\n".join(lines) + "\n")
    run = experiment.Config(corpus=str(sliced), eval_dir=str(tmp_path), dim=20, epochs=2, batch_size=512)
    out = tmp_path / "run"
    out.mkdir()
    results = experiment.train(run, out, experiment.load_data(run), log=lambda _: None)
    first, last = results["history"]
    assert last["mean_loss"] < first["mean_loss"]
    assert results["evaluation"] == {}  # no evaluation files in tmp_path
