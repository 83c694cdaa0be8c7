"""POS tagging (many-to-many): the CoNLL-U reader, the tagger's padding invariance and masked loss, the experiment."""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tagging
from refusals import refusal

from seqjax import experiment as ex
from seqjax.cells import lstm
from seqjax.data import conllu as data_lib
from seqjax.data.text import DataError
from seqjax.models import tagger

ROOT = Path(__file__).resolve().parents[1]
EWT = ROOT.parent / "shared" / "data" / "ud_english_ewt"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def token(i, form, upos, lemma="_"):
    return f"{i}\t{form}\t{lemma}\t{upos}\t_\t_\t0\troot\t_\t_"


SNIPPET = "\n".join([
    "# newdoc id = x",
    "# sent_id = 1",
    "# text = Don't stop",
    "1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_",
    token(1, "Do", "AUX", "do"),
    token(2, "n't", "PART", "not"),
    token(3, "stop", "VERB"),
    "",
    "# sent_id = 2",
    token(1, "Stop", "VERB"),
    "1.1\tgo\tgo\tVERB\t_\t_\t_\t_\t0:root\t_",
    token(2, "it", "PRON"),
    token(3, "!", "PUNCT"),
    "",
    "",
])  # fmt: skip


# -- the reader ---------------------------------------------------------------------------------------------------


def test_reader_vocabularies_and_batches(tmp_path):
    split = data_lib.read_split(write(tmp_path / "x-train.conllu", SNIPPET))
    assert split.forms == (("Do", "n't", "stop"), ("Stop", "it", "!"))  # no range line, no empty node
    assert split.tags == (("AUX", "PART", "VERB"), ("VERB", "PRON", "PUNCT"))
    assert len(split) == 2 and split.num_tokens == 6
    crlf = data_lib.read_split(write(tmp_path / "crlf.conllu", SNIPPET.replace("\n", "\r\n").rstrip()))
    assert (crlf.forms, crlf.tags) == (split.forms, split.tags)  # CRLF and no final blank line

    vocabs = data_lib.build_vocabs(split, min_count=2)
    assert vocabs.words.tokens == ("<pad>", "<unk>", "stop")  # "Stop" and "stop" lower-cased: seen twice
    assert vocabs.tags.tokens == ("AUX", "PART", "PRON", "PUNCT", "VERB")
    assert vocabs.chars.tokens[:2] == ("<pad>", "<unk>") and {"S", "s", "'", "!"} <= set(vocabs.chars.tokens)

    write(tmp_path / "x-dev.conllu", "\n".join([token(1, "Stop", "VERB"), token(2, "Now", "VERB"), ""]))
    write(tmp_path / "x-test.conllu", "\n".join([token(1, "unhappystop", "VERB"), ""]))
    data = data_lib.load_conllu(tmp_path, min_count=2, max_word_len=4, prefix="x")
    np.testing.assert_array_equal(data.train.words, [[1, 1, 2], [2, 1, 1]])
    np.testing.assert_array_equal(data.train.tags, [[0, 1, 4], [4, 2, 3]])
    np.testing.assert_array_equal(data.dev.words, [[2, 1]])
    index = {c: i for i, c in enumerate(data.vocabs.chars.tokens)}
    np.testing.assert_array_equal(
        data.test.spellings[data.test.forms[0, 0]], [1, index["n"], index["o"], index["p"]]
    )  # un..op
    assert data_lib.spell("Now", data.vocabs.chars, 4) == [1, index["o"], 1]  # "N", "w" not in train

    words, chars, lengths, tags = data_lib.take(data.train, np.array([1, 0]), pad_multiple=4)
    np.testing.assert_array_equal(words, [[2, 1, 1, 0], [1, 1, 2, 0]])
    np.testing.assert_array_equal(tags, [[4, 2, 3, 0], [0, 1, 4, 0]])
    assert lengths.tolist() == [3, 3] and chars.shape == (2, 4, 4) and chars.dtype == np.int32
    np.testing.assert_array_equal(chars[0, 0], [index[c] for c in "Stop"])
    np.testing.assert_array_equal(chars[1, 1], [index["n"], index["'"], index["t"], 0])
    assert not chars[:, 3].any()  # padding: no characters


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        (["# c", token(1, "a", "DET").replace("\t_\t_", "\t_", 1)], 2, "expected 10 tab-separated columns, found 9"),
        ([token(1, "a", "DET").replace("\t", " ")], 1, "expected 10 tab-separated columns, found 1"),
        ([token(1, "a", "DET"), "", "x" + token(1, "b", "NOUN")], 3, "the ID must be an integer, found 'x1'"),
        ([token(1, "a", "DET"), token(2, "", "NOUN")], 2, "empty FORM or UPOS"),
    ],
    ids=["nine-columns", "spaces", "id-word", "empty-form"],
)
def test_malformed_files_are_one_line_errors_naming_file_and_line(tmp_path, lines, line, message):
    path = write(tmp_path / "train.conllu", "\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        data_lib.read_split(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}:{line}: ") and message in text, text


def test_missing_empty_and_unseen_tags(tmp_path):
    for path, message in ((tmp_path / "no.conllu", "no such file"), (write(tmp_path / "e.conllu", "\n\n"), "empty")):
        with pytest.raises(DataError, match=message):
            data_lib.read_split(path)
    with pytest.raises(DataError, match="no sentences"):
        data_lib.read_split(write(tmp_path / "c.conllu", "# only a comment\n"))
    for split in data_lib.SPLITS:
        write(tmp_path / f"x-{split}.conllu", token(1, "a", "DET" if split != "test" else "INTJ") + "\n")
    data = data_lib.load_conllu(tmp_path, prefix="x")  # a tag train lacks: in the tag set, never predicted
    assert data.vocabs.tags.tokens == ("DET", "INTJ") and data.test.tags.tolist() == [[1]]
    vocabs = data_lib.build_vocabs(data_lib.read_split(tmp_path / "x-train.conllu"))
    with pytest.raises(DataError, match=f"{tmp_path / 'x-test.conllu'}: the tag 'INTJ' is not in the tag set"):
        data_lib.encode(data_lib.read_split(tmp_path / "x-test.conllu"), vocabs)


# -- the tagger ---------------------------------------------------------------------------------------------------

# The sizes of the experiment tests' TINY in the first layer: the eager initialisers compile once per shape.
MODEL = tagger.TaggerConfig(vocab_size=20, char_vocab_size=12, num_tags=5, num_layers=2, hidden_size=24, embed_size=16,
                            char_embed_size=8, char_features=24, embed_scale=1.0)  # fmt: skip
SENTENCE = [3, 7, 2, 9, 4]
W = 6  # characters per word


def padded(rows, steps, seed=0):
    """``(words [b, steps], chars [b, steps, W], lengths [b])``: every sentence's word i is spelt by
    ``spelling(word)``; the rows are followed by random words and characters, which must be ignored."""
    rng = np.random.default_rng(seed)
    words = rng.integers(1, 20, size=(len(rows), steps)).astype(np.int32)
    chars = rng.integers(1, 12, size=(len(rows), steps, W)).astype(np.int32)
    for i, row in enumerate(rows):
        words[i, : len(row)] = row
        chars[i, : len(row)] = [spelling(w) for w in row]
    return jnp.asarray(words), jnp.asarray(chars), jnp.asarray([len(row) for row in rows], jnp.int32)


def spelling(word):
    """A word's characters: ``word % 5 + 1`` of them, then padding."""
    n = word % 5 + 1
    return [(word * 7 + j) % 11 + 1 for j in range(n)] + [0] * (W - n)


def test_logits_ignore_padding_and_batch_mates(key):
    with jax.numpy_dtype_promotion("standard"):  # as the experiment tests' (a compilation's key): compiled once
        params = tagger.init_params(MODEL, key)
    logits = jax.jit(lambda p, w, c, n: tagger.apply(MODEL, p, w, c, n))
    alone = logits(params, *padded([SENTENCE], len(SENTENCE)))[0]  # [5, T]
    mates = logits(params, *padded([[5] * 9, SENTENCE, [8, 1]], 9, seed=1))
    other = logits(params, *padded([[11, 12, 13], [2] * 7, SENTENCE], 9, seed=2))
    np.testing.assert_allclose(mates[1, :5], alone, rtol=0, atol=1e-5)
    np.testing.assert_allclose(other[2, :5], alone, rtol=0, atol=1e-5)
    assert np.abs(mates[0, 1:5] - alone[1:]).max() > 1e-3  # other sentences, other logits
    assert np.abs(alone[0] - alone[1]).max() > 1e-4  # per position, not one vector per sentence
    # the characters matter: respelling one word changes its logits (and, through the BiLSTM, its neighbours')
    words, chars, lengths = padded([SENTENCE], len(SENTENCE))
    respelt = logits(params, words, chars.at[0, 2, 0].set(11 - chars[0, 2, 0]), lengths)[0]
    assert np.abs(respelt[2] - alone[2]).max() > 1e-4


def test_an_lstm_with_a_projection_feeds_the_readout_its_projected_features(key):
    """``lstm(proj_size=3)`` read both ways: the layers and the readout take 2 x 3 features, not 2 x hidden; a
    sentence's logits do not depend on its batch mates."""
    config = dataclasses.replace(MODEL, cell=lstm(proj_size=3), bidirectional=True)
    with jax.numpy_dtype_promotion("standard"):
        params = tagger.init_params(config, key)
    assert params["out_w"].shape == (6, 5) and params["layers"][1][0]["w_ih"].shape == (6, 4 * 24)
    logits = jax.jit(lambda p, w, c, n: tagger.apply(config, p, w, c, n))
    alone = logits(params, *padded([SENTENCE], len(SENTENCE)))[0]
    mates = logits(params, *padded([[5] * 9, SENTENCE], 9, seed=1))
    np.testing.assert_allclose(mates[1, :5], alone, rtol=0, atol=1e-5)


def test_masked_loss_and_accuracy_ignore_padding():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 3)).astype(np.float32)
    tags = np.array([[0, 2, 1, 1], [2, 0, 0, 0]], np.int32)
    lengths = np.array([3, 1], np.int32)
    by_hand_nll, by_hand_correct = [], []
    for b, s in [(0, 0), (0, 1), (0, 2), (1, 0)]:  # the 4 valid tokens
        z = logits[b, s].astype(np.float64)
        by_hand_nll.append(np.log(np.sum(np.exp(z))) - z[tags[b, s]])
        by_hand_correct.append(np.argmax(z) == tags[b, s])
    garbage = logits.copy()
    garbage[0, 3], garbage[1, 1:] = 1e4, -1e4  # the padding's logits: must not count
    for x in (logits, garbage):
        args = (jnp.asarray(x), jnp.asarray(tags), jnp.asarray(lengths))
        np.testing.assert_allclose(tagger.loss(*args), np.mean(by_hand_nll), rtol=1e-6)
        np.testing.assert_allclose(tagger.accuracy(*args), np.mean(by_hand_correct), rtol=1e-6)


# -- the experiment -----------------------------------------------------------------------------------------------

SUFFIXES = {"ing": "VERB", "ly": "ADV", "ness": "NOUN", "ed": "VERB"}
FUNCTION = {"the": "DET", "a": "DET", "of": "ADP", "and": "CCONJ", "to": "PART"}


def synthetic_conllu(directory: Path, sizes=(("train", 240), ("dev", 60), ("test", 60)), seed=0) -> Path:
    """Words are function words or a stem with a suffix that decides the tag; dev and test use half their
    stems from train and half new ones, whose words are ``<unk>``: only the characters tell their tags."""
    rng = np.random.default_rng(seed)
    stems = [str(rng.choice(list("bcdfkmprtv"))) + str(rng.choice(list("aeou"))) + str(rng.choice(list("bdkmprt")))
             for _ in range(80)]  # fmt: skip
    directory.mkdir()
    for split, size in sizes:
        pool = stems[:40] if split == "train" else stems[20:60]
        sentences = []
        for _ in range(size):
            lines = []
            for i in range(1, int(rng.integers(3, 9)) + 1):
                if rng.random() < 0.4:
                    form = str(rng.choice(list(FUNCTION)))
                    upos = FUNCTION[form]
                else:
                    suffix = str(rng.choice(list(SUFFIXES)))
                    form, upos = str(rng.choice(pool)) + suffix, SUFFIXES[suffix]
                lines.append(token(i, form.title() if i == 1 else form, upos))
            sentences.append("\n".join(lines) + "\n")
        write(directory / f"ewt-{split}.conllu", "\n".join(sentences))
    return directory


TINY = dict(prefix="ewt", num_layers=1, embed=16, char_embed=8, char_features=24, hidden=24, dropout=0.1,
            min_count=1, batch_size=16, pad_multiple=8, learning_rate=0.01, eval_batch_size=64, log_every=5,
            checkpoint_every=1000)  # fmt: skip


def test_learns_synthetic_tags_including_unknown_words(tmp_path):
    config = tagging.Config(data=str(synthetic_conllu(tmp_path / "data")), epochs=3, **TINY)
    out = tmp_path / "run"
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam: b ** count with an int32 count
        results = ex.run(tagging.EXPERIMENT, config, out)
    assert results["steps"] == 3 * 15 and [h["step"] for h in results["history"]] == [15, 30, 45]
    best = int(np.argmax(results["dev_accuracy"]))
    assert results["best"]["epoch"] == best + 1 and results["best"]["test_accuracy"] == results["test_accuracy"][best]
    # chance: ~0.3 (the commonest tag); the new stems' words are <unk> in dev and test: solved by the characters
    assert results["best"]["dev_accuracy"] >= 0.95 and results["best"]["test_accuracy"] >= 0.95, results
    assert json.loads((out / "results.json").read_text()) == results
    assert json.loads((out / "tags.json").read_text())["tokens"] == [
        "ADP",
        "ADV",
        "CCONJ",
        "DET",
        "NOUN",
        "PART",
        "VERB",
    ]
    assert (out / "eval" / "metrics.jsonl").read_text().count("\n") == 3 and (out / "best" / "checkpoints").is_dir()


def test_a_malformed_file_is_refused_in_one_line_before_the_workdir(tmp_path):
    data = synthetic_conllu(tmp_path / "data", sizes=(("train", 20), ("dev", 5), ("test", 5)))
    dev = data / "ewt-dev.conllu"
    lines = dev.read_text().split("\n")
    lines[1] = "x" + lines[1]
    write(dev, "\n".join(lines))
    out = tmp_path / "run"
    line = refusal(tagging, f"--workdir={out}", f"--data={data}", "--prefix=ewt")
    assert f"{dev}:2: the ID must be an integer, found 'x2'" in line and not out.exists()


@pytest.mark.skipif(not EWT.is_dir(), reason=f"{EWT} not present (the shared UD English-EWT data)")
def test_a_slice_of_ud_english_ewt_end_to_end(tmp_path):
    full = [data_lib.read_split(path) for path in data_lib.split_paths(EWT).values()]  # read and checked in full
    assert [(len(s), s.num_tokens) for s in full] == [(12544, 204577), (2001, 25147), (2077, 25094)]
    assert sorted({t for s in full for tags in s.tags for t in tags}) == [
        "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT", "SCONJ",
        "SYM", "VERB", "X",
    ]  # fmt: skip
    data = tmp_path / "ewt"
    data.mkdir()
    for path in data_lib.split_paths(EWT).values():
        blocks = path.read_text(encoding="utf-8").split("\n\n")  # the first 200 sentences of each split
        write(data / path.name, "\n\n".join(blocks[:200]) + "\n\n")
    # One padded shape to train on ([50, 160]), one to evaluate ([200, 160]), one direction (the synthetic test
    # has the bidirectional model): compiling the training step is most of this test's time.
    tiny = dict(TINY, prefix="en_ewt-ud", min_count=2, batch_size=50, pad_multiple=160, max_steps=3,
                eval_batch_size=200, bidirectional=False)  # fmt: skip
    config = tagging.Config(data=str(data), **tiny)
    out = tmp_path / "run"
    with jax.numpy_dtype_promotion("standard"):
        results = ex.run(tagging.EXPERIMENT, config, out)
    assert results["steps"] == 3 and results["sentences"] == {"train": 200, "dev": 200, "test": 200}
    assert 0 <= results["best"]["dev_accuracy"] <= 1 and results["tokens"]["train"] > 1000


def test_without_character_features_the_tagger_has_no_character_cnn(tmp_path):
    """--char_features=0, documented in the script's docstring: the words alone, and no CNN parameters."""
    config = tagging.Config(data=str(synthetic_conllu(tmp_path / "data")), epochs=1, **{**TINY, "char_features": 0})
    with jax.numpy_dtype_promotion("standard"):
        results = ex.run(tagging.EXPERIMENT, config, tmp_path / "run")
    assert results["steps"] == 15 and len(results["test_accuracy"]) == 1
    plan = tagging.plan(config, tagging.load_data(config))
    assert not [name for name in plan.params if name.startswith("char")]
