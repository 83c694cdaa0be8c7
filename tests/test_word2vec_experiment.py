"""experiments/word2vec.py end to end on a generated two-topic corpus, plus a slice of PTB when present."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import word2vec as experiment  # experiments/word2vec.py

from seqjax import config as config_lib
from seqjax.models.word_vectors import load_word2vec

ROOT = Path(__file__).resolve().parents[1]
PTB = ROOT.parent / "shared" / "data" / "ptb" / "ptb.train.txt"


def cli(*args):
    command = [sys.executable, str(ROOT / "experiments" / "word2vec.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


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


def test_run_writes_vectors_evaluates_and_resumes(corpus, eval_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    first = config(corpus, eval_dir, epochs=1, optimizer="adam", alpha=0.02)  # adam: the optimizer state resumes too
    prepared = experiment.load_data(first)
    assert len(prepared.vocab) == 12 and prepared.raw_words == 3500
    results = experiment.train(first, out, prepared, log=lambda _: None)
    assert results["epochs_run"] == 1
    # A rerun with more epochs resumes after epoch 1 and trains only epoch 2.
    logged = []
    results = experiment.train(config_lib.replace(first, epochs=2), out, prepared, log=logged.append)
    assert logged[0] == "resuming after epoch 1"
    assert [h["epoch"] for h in results["history"]] == [2]
    vectors = load_word2vec(out / "vectors.bin", binary=True)
    assert vectors.words == prepared.vocab.words  # most frequent first
    np.testing.assert_allclose(load_word2vec(out / "vectors.txt", binary=False).vectors, vectors.vectors)
    pairs = results["evaluation"]["wordsim353"]
    assert pairs["spearman"] > 0.5 and pairs["oov_ratio"] == pytest.approx(1 / 7)
    analogy = results["evaluation"]["analogy_add"]
    assert analogy["questions"] == 2 and analogy["malformed"] == 1
    neighbours = experiment.query(vectors, "a0", topn=5)
    assert sum(w.startswith("a") for w, _ in neighbours) >= 4


def test_query_parsing():
    assert experiment.parse_query("king - man + woman") == ("similar", ["king", "woman"], ["man"])
    assert experiment.parse_query("paris") == ("similar", ["paris"], [])
    assert experiment.parse_query("good ~ great") == ("similarity", ["good", "great"], [])
    assert experiment.parse_query("well-known + x") == ("similar", ["well-known", "x"], [])
    for bad in ("- man", "a ~ b ~ c", "a ~", "king queen", "a * b", "", "a + ~", "a +- b"):
        with pytest.raises(ValueError, match="--query"):
            experiment.parse_query(bad)


def test_cli_bad_corpus_is_one_line_and_leaves_no_workdir(tmp_path):
    rare = tmp_path / "rare.txt"
    rare.write_text("one two three\n")
    out = tmp_path / "out"
    done = cli(f"--corpus={rare}", f"--workdir={out}")
    assert done.returncode != 0
    assert f"{rare}: no word occurs min_count=5 times" in done.stderr
    assert not out.exists()
    done = cli(f"--workdir={out}", "--query=king - man")
    assert done.returncode != 0 and "vectors.bin: no such file" in done.stderr


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
