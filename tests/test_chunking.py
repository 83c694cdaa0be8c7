"""Chunking (many-to-many): IOB2 chunks and F1 against hand-worked and brute-force references, the CoNLL-2000
reader, the tagger's POS input, the experiment end to end on generated data."""

import dataclasses
import itertools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tagging

from seqjax import chunk_f1
from seqjax import experiment as ex
from seqjax.data import conll2000
from seqjax.data.text import DataError
from seqjax.models import tagger

# -- chunks and F1 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ("B-NP I-NP O B-VP I-VP B-PP B-NP", [("NP", 0, 2), ("VP", 3, 5), ("PP", 5, 6), ("NP", 6, 7)]),
        ("B-NP B-NP I-NP", [("NP", 0, 1), ("NP", 1, 3)]),  # B- always starts a chunk
        ("I-NP I-NP O I-VP", [("NP", 0, 2), ("VP", 3, 4)]),  # I- without B-: at the start, after O
        ("B-NP I-VP I-VP I-NP", [("NP", 0, 1), ("VP", 1, 3), ("NP", 3, 4)]),  # the type switches inside a run
        ("I-NP B-VP I-NP", [("NP", 0, 1), ("VP", 1, 2), ("NP", 2, 3)]),
        ("O O", []),
        ("", []),
    ],
    ids=["well-formed", "b-after-b", "i-without-b", "type-switch", "i-after-other-b", "outside", "empty"],
)
def test_chunks_of_hand_worked_sequences(tags, expected):
    assert chunk_f1.chunks(tags.split()) == expected


@pytest.mark.parametrize("tag", ["X-NP", "B-", "B", "I_NP", "o", ""])
def test_a_tag_that_is_not_iob2_is_refused(tag):
    with pytest.raises(ValueError, match="not an IOB2 tag"):
        chunk_f1.chunks(["B-NP", tag])


def brute_force_chunks(tags):
    """Every span ``[i, j)`` checked against the definition: all its tags name type X, its first tag does not
    continue its left neighbour, every later tag is ``I-X``, and the tag after it (if any) is not ``I-X``."""

    def continues(s, kind):  # tag s is I-kind and its left neighbour (inside the sentence) has the same type
        return tags[s] == f"I-{kind}" and s > 0 and tags[s - 1][2:] == kind

    found = set()
    kinds = {tag[2:] for tag in tags if tag != "O"}
    for i, j, kind in itertools.product(range(len(tags)), range(1, len(tags) + 1), kinds):
        if i < j and all(tag[2:] == kind for tag in tags[i:j]) and not continues(i, kind):
            if all(tags[s] == f"I-{kind}" for s in range(i + 1, j)) and (j == len(tags) or not continues(j, kind)):
                found.add((kind, i, j))
    return found


def test_chunks_equal_a_brute_force_enumeration_of_every_short_sequence():
    alphabet = ["O", "B-A", "I-A", "B-B", "I-B"]
    for n in range(6):
        for tags in itertools.product(alphabet, repeat=n):
            found = chunk_f1.chunks(tags)
            assert set(found) == brute_force_chunks(tags) and len(found) == len(set(found)), tags


def test_scores_of_a_hand_worked_corpus():
    # conlleval on this file (gold, predicted per line) prints, by hand:
    #   processed 8 tokens with 5 phrases; found: 6 phrases; correct: 4.
    #   accuracy:  75.00%; precision:  66.67%; recall:  80.00%; FB1:  72.73
    #   NP: precision: 50.00%; recall: 66.67%; FB1: 57.14  4      (PP and VP: 100.00 each, 1)
    # gold chunks NP[0,2) VP[2,3) NP[4,5) | PP[0,1) NP[1,3); predicted NP[0,2) VP[2,3) NP[4,5) (I-NP after O
    # opens a chunk, which matches) | PP[0,1) NP[1,2) NP[2,3) (both wrong).
    gold = [["B-NP", "I-NP", "B-VP", "O", "B-NP"], ["B-PP", "B-NP", "I-NP"]]
    predicted = [["B-NP", "I-NP", "B-VP", "O", "I-NP"], ["B-PP", "B-NP", "B-NP"]]
    scores = chunk_f1.score(gold, predicted)
    assert (scores.overall.correct, scores.overall.predicted, scores.overall.gold) == (4, 6, 5)
    assert scores.overall.precision == pytest.approx(4 / 6) and scores.overall.recall == pytest.approx(4 / 5)
    assert scores.overall.f1 == pytest.approx(8 / 11)  # 2 (2/3)(4/5) / (2/3 + 4/5) = 72.73%
    assert scores.accuracy == 6 / 8 and scores.tokens == 8
    assert sorted(scores.per_type) == ["NP", "PP", "VP"]
    assert scores.per_type["NP"].f1 == pytest.approx(4 / 7) and scores.per_type["NP"].scores()["predicted"] == 4
    assert scores.per_type["VP"].f1 == scores.per_type["PP"].f1 == 1.0
    # sentences are separate: a chunk never runs on into the next sentence
    assert chunk_f1.score([["B-NP"], ["I-NP"]], [["B-NP", "I-NP"][:1], ["B-NP"]]).overall.correct == 2
    # nothing predicted: precision 0 (not undefined), F1 0
    nothing = chunk_f1.score(gold, [["O"] * len(s) for s in gold]).overall
    assert (nothing.precision, nothing.recall, nothing.f1) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="sentence 1: 3 gold tags, 2 predicted"):
        chunk_f1.score(gold, [predicted[0], predicted[1][:2]])


def test_scores_equal_set_counts_of_brute_force_chunks_on_random_corpora():
    rng = np.random.default_rng(0)
    alphabet = np.array(["O", "B-A", "I-A", "B-B", "I-B", "B-C"])
    for _ in range(30):
        lengths = rng.integers(0, 9, size=int(rng.integers(1, 6)))
        gold = [list(rng.choice(alphabet, n)) for n in lengths]
        # predictions: the gold tags with some changed, so that some chunks match
        predicted = [[t if rng.random() < 0.7 else str(rng.choice(alphabet)) for t in s] for s in gold]
        spans = [
            ({(s, *c) for c in brute_force_chunks(g)}, {(s, *c) for c in brute_force_chunks(p)})
            for s, (g, p) in enumerate(zip(gold, predicted, strict=True))
        ]
        gold_set = set().union(*(g for g, _ in spans))
        found_set = set().union(*(p for _, p in spans))
        scores = chunk_f1.score(gold, predicted)
        for kind, counts in [(None, scores.overall), *scores.per_type.items()]:
            g = {c for c in gold_set if kind in (None, c[1])}
            p = {c for c in found_set if kind in (None, c[1])}
            assert (counts.correct, counts.predicted, counts.gold) == (len(g & p), len(p), len(g))
            if g and p and g & p:
                precision, recall = len(g & p) / len(p), len(g & p) / len(g)
                assert counts.f1 == pytest.approx(2 / (1 / precision + 1 / recall))


# -- the reader ---------------------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


SNIPPET = "Confidence NN B-NP\nin IN B-PP\nthe DT B-NP\npound NN I-NP\n\n\nHe PRP B-NP\nrose VBD B-VP\n. . O\n\n"


def test_reader_sentences_columns_dev_split_and_batches(tmp_path):
    split = conll2000.read_split(write(tmp_path / "train.txt", SNIPPET))
    assert split.forms == (("Confidence", "in", "the", "pound"), ("He", "rose", "."))  # two blank lines: one break
    assert split.pos == (("NN", "IN", "DT", "NN"), ("PRP", "VBD", "."))
    assert split.chunks == (("B-NP", "B-PP", "B-NP", "I-NP"), ("B-NP", "B-VP", "O"))
    assert len(split) == 2 and split.num_tokens == 7
    crlf = conll2000.read_split(write(tmp_path / "crlf.txt", SNIPPET.replace("\n", "\r\n").rstrip()))
    assert (crlf.forms, crlf.pos, crlf.chunks) == (split.forms, split.pos, split.chunks)  # CRLF, no final blank

    ten = conll2000.read_split(write(tmp_path / "ten.txt", "".join(f"w{i} NN B-NP\n\n" for i in range(10))))
    train, dev = conll2000.carve_dev(ten, 0.25)  # round(2.5) = 2: the last two sentences
    assert [s[0] for s in train.forms] == [f"w{i}" for i in range(8)] and dev.forms == (("w8",), ("w9",))
    assert "last 2 sentences" in dev.source
    for fraction in (0.01, 0.99):
        with pytest.raises(DataError, match="cannot carve a dev split"):
            conll2000.carve_dev(ten, fraction)

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write(data_dir / "train.txt", SNIPPET + "the DT B-NP\nrose NN I-NP\n\nrose VBD B-VP\n")  # the last is dev
    write(data_dir / "test.txt", "The DT B-NP\nPound NN I-NP\nfell VBD B-VP\nsharply RB B-ADVP\n. . O\n")
    data = conll2000.load_conll2000(data_dir, min_count=1, max_word_len=6, dev_fraction=0.25)
    assert [len(data.train), len(data.dev), len(data.test)] == [3, 1, 1]
    assert data.vocabs.tags.tokens == ("B-ADVP", "B-NP", "B-PP", "B-VP", "I-NP", "O")  # all splits' tags
    assert data.pos.tokens == ("<pad>", "<unk>", "NN", "DT", ".", "IN", "PRP", "VBD")  # train's, by frequency
    np.testing.assert_array_equal(data.test.pos, [[3, 2, 7, 1, 4]])  # RB is not in train: <unk>
    np.testing.assert_array_equal(data.test.tags, [[1, 4, 3, 0, 5]])
    words = data.vocabs.words.index
    assert data.test.words[0].tolist() == [words["the"], words["pound"], 1, 1, words["."]]  # lower-cased
    words_b, chars, lengths, tags, pos = conll2000.take(data.train, np.array([2, 1]), pad_multiple=4)
    assert lengths.tolist() == [2, 3] and words_b.shape == tags.shape == pos.shape == (2, 4)
    assert chars.shape == (2, 4, 6)
    np.testing.assert_array_equal(pos, [[3, 2, 0, 0], [6, 7, 4, 0]])
    np.testing.assert_array_equal(tags, [[1, 4, 0, 0], [1, 3, 5, 0]])
    batches = list(conll2000.eval_batches(data.train, 2, pad_multiple=1))
    assert [b[0].tolist() for b in batches] == [[2, 1], [0]] and batches[1][5].shape == (2, 4)  # filled up to 2


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a DT B-NP\nb NN\n", 2, "expected 3 space-separated columns 'word POS chunk', found 'b NN'"),
        ("a DT B-NP\n\nb NN I-NP x\n", 3, "expected 3 space-separated columns"),
        ("a\tDT\tB-NP\n", 1, "expected 3 space-separated columns"),
        ("a  DT B-NP\n", 1, "expected 3 space-separated columns"),
        ("a DT B-NP\nb NN X-NP\n", 2, "the chunk tag must be O, B-X or I-X, found 'X-NP'"),
    ],
    ids=["two-columns", "four-columns", "tabs", "double-space", "bad-chunk-tag"],
)
def test_malformed_lines_are_one_line_errors_naming_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path / "train.txt", text)
    with pytest.raises(DataError) as info:
        conll2000.read_split(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}:{line}: ") and message in text, text


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        conll2000.load_conll2000(tmp_path / "none")
    with pytest.raises(DataError, match=f"{tmp_path / 'train.txt'}: no such file"):
        conll2000.load_conll2000(tmp_path)
    with pytest.raises(DataError, match="empty"):
        conll2000.read_split(write(tmp_path / "blank.txt", "\n \n\n"))


CONLL2000 = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2000"


@pytest.mark.skipif(not CONLL2000.is_dir(), reason=f"{CONLL2000} not present (the shared CoNLL-2000 data)")
def test_the_shared_files_have_the_published_counts():
    train, test = (conll2000.read_split(path) for path in conll2000.split_paths(CONLL2000).values())
    assert (len(train), len(test), test.num_tokens) == (8936, 2012, 47377)  # the data README; conlleval's header
    # conlleval on the test file prints "processed 47377 tokens with 23852 phrases" (the gold chunks)
    gold = chunk_f1.score(test.chunks, test.chunks)
    assert gold.overall.gold == 23852 and gold.overall.f1 == 1.0 and len(gold.per_type) == 10  # no UCP in test


# -- the tagger's POS input ---------------------------------------------------------------------------------------

# The layer sizes of the experiment test's TINY: the eager initialisers compile once per shape.
MODEL = tagger.TaggerConfig(vocab_size=20, char_vocab_size=12, num_tags=5, num_layers=1, hidden_size=24, embed_size=16,
                            char_embed_size=8, char_features=16, bidirectional=False, embed_scale=1.0)  # fmt: skip
WITH_POS = dataclasses.replace(MODEL, pos_vocab_size=7, pos_embed_size=8)


def test_pos_input_is_a_concatenated_embedding(key):
    rng = np.random.default_rng(0)
    words = jnp.asarray(rng.integers(1, 20, size=(2, 5)), jnp.int32)
    chars = jnp.asarray(rng.integers(0, 12, size=(2, 5, 4)), jnp.int32)
    pos = jnp.asarray(rng.integers(1, 7, size=(2, 5)), jnp.int32)
    lengths = jnp.asarray([5, 3], jnp.int32)
    with jax.numpy_dtype_promotion("standard"):  # as the experiment test's (a compilation's key)
        plain, given = tagger.init_params(MODEL, key), tagger.init_params(WITH_POS, key)
    assert given["pos_embedding"].shape == (7, 8) and given["layers"][0]["w_ih"].shape == (16 + 16 + 8, 4 * 24)
    # the plain model's parameters do not change when the POS embedding is added (besides layer 0's input rows)
    for name in ("embedding", "char_embedding", "char_w", "out_w"):
        np.testing.assert_array_equal(given[name], plain[name])
    # zero weights on the POS rows of layer 0: exactly the plain model, whatever the POS tags
    zeroed = dict(plain, pos_embedding=given["pos_embedding"])
    layer = plain["layers"][0]
    zeroed["layers"] = [dict(layer, w_ih=jnp.concatenate([layer["w_ih"], jnp.zeros((8, 4 * 24))], axis=0))]
    expected = tagger.predict(MODEL, plain, words, chars, lengths)
    np.testing.assert_allclose(tagger.predict(WITH_POS, zeroed, words, chars, lengths, pos), expected, atol=1e-6)
    # with its own weights the POS tag matters: changing one changes that token's logits
    both = tagger.predict(WITH_POS, given, *(jnp.concatenate([a, a]) for a in (words, chars, lengths)),
                          jnp.concatenate([pos, pos.at[0, 2].set(pos[0, 2] % 6 + 1)]))  # fmt: skip
    logits, changed = both[:2], both[2:]
    assert np.abs(changed[0, 2] - logits[0, 2]).max() > 1e-4
    np.testing.assert_array_equal(changed[1], logits[1])  # another sentence: untouched
    for config, args in ((WITH_POS, ()), (MODEL, (pos,))):
        with pytest.raises(ValueError, match="the given tags"):
            tagger.predict(config, given, words, chars, lengths, *args)


# -- the experiment -----------------------------------------------------------------------------------------------

PHRASES = {  # phrase: (chunk type or None for O, [(POS, words or suffixes)])
    "NP": [("DT", ["the", "a"]), ("JJ", ["ous", "ful"]), ("NN", ["ness", "ment"])],
    "VP": [("VBD", ["ed"]), ("VBG", ["ing"])],
    "PP": [("IN", ["of", "in", "on"])],
}


def synthetic_conll2000(directory: Path, sizes=(("train", 300), ("test", 60)), seed=0) -> Path:
    """Sentences ``NP VP [NP] [PP NP] .``; an NP is ``[DT] [JJ] NN``, so NPs meet (VP NP NP: the second
    begins at its DT, or at a JJ/NN after an NN); content words are a stem and a POS suffix, and test uses
    half new stems: ``<unk>`` words whose chunk tags follow from the POS tags and spellings."""
    rng = np.random.default_rng(seed)
    stems = ["".join(rng.choice(list("bcdfkmprtv")) + rng.choice(list("aeiou")) for _ in range(2)) for _ in range(60)]
    directory.mkdir()

    def word(pos, choices, pool):
        ending = str(rng.choice(choices))
        return (ending if pos in ("DT", "IN") else str(rng.choice(pool)) + ending), pos

    def phrase(kind, pool):
        if kind == "NP":
            parts = [p for p in PHRASES["NP"] if p[0] == "NN" or rng.random() < 0.5]
        elif kind == "VP":
            parts = [PHRASES["VP"][int(rng.integers(2))]] * int(rng.integers(1, 3))
        else:
            parts = PHRASES["PP"]
        return [
            (*word(pos, choices, pool), ("B-" if i == 0 else "I-") + kind) for i, (pos, choices) in enumerate(parts)
        ]

    for split, size in sizes:
        pool = stems[:30] if split == "train" else stems[15:45]
        sentences = []
        for _ in range(size):
            kinds = ["NP", "VP"] + ["NP"] * int(rng.integers(0, 3)) + (["PP", "NP"] if rng.random() < 0.5 else [])
            tokens = [t for kind in kinds for t in phrase(kind, pool)] + [(".", ".", "O")]
            sentences.append("".join(f"{w} {p} {c}\n" for w, p, c in tokens))
        write(directory / f"{split}.txt", "\n".join(sentences))
    return directory


TINY = dict(dataset="conll2000", num_layers=1, embed=16, char_embed=8, char_features=16, hidden=24, dropout=0.1,
            pos_embed=8, min_count=1, batch_size=16, pad_multiple=16, learning_rate=0.02, eval_batch_size=64,
            log_every=5, checkpoint_every=1000)  # fmt: skip


def test_learns_synthetic_chunks_and_selects_by_dev_f1(tmp_path):
    config = tagging.Config(data=str(synthetic_conll2000(tmp_path / "data")), epochs=2, **TINY)
    out = tmp_path / "run"
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam: b ** count with an int32 count
        results = ex.run(tagging.EXPERIMENT, config, out)
    assert results["sentences"] == {"train": 270, "dev": 30, "test": 60} and results["steps"] == 2 * 16
    best = int(np.argmax(results["dev_f1"]))
    assert results["best"]["epoch"] == best + 1 and results["best"]["test_f1"] == results["test_f1"][best]
    assert results["best"]["dev_f1"] >= 0.9 and results["best"]["test_f1"] >= 0.9, results["history"]
    # the per-type scores come from the restored best model: their counts add up to its recorded test F1
    per_type = results["best"]["test_per_type"]
    assert sorted(per_type) == ["NP", "PP", "VP"]
    correct, predicted, gold = (sum(t[name] for t in per_type.values()) for name in ("correct", "predicted", "gold"))
    assert 2 * correct / (predicted + gold) == pytest.approx(results["best"]["test_f1"])
    assert json.loads((out / "results.json").read_text()) == results
    assert json.loads((out / "pos.json").read_text())["tokens"][:2] == ["<pad>", "<unk>"]
    assert (out / "eval" / "metrics.jsonl").read_text().count("\n") == 2
