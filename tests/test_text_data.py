"""Text corpora: formats, vocabularies, splits and one-line errors; the real PTB and Tiny Shakespeare when present."""

from pathlib import Path

import numpy as np
import pytest

from seqjax.data.corpus import load_chars, load_corpus, load_ptb
from seqjax.data.text import EOS, DataError, Vocab, join_tokens, read_text, split_prime, tokens_of

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PTB = SHARED / "ptb"
SHAKESPEARE = SHARED / "tinyshakespeare" / "input.txt"


def write_ptb(directory: Path, train: str, valid: str, test: str, char: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    middle = "char." if char else ""
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (directory / f"ptb.{middle}{split}.txt").write_text(text)
    return directory


def test_ptb_words_end_every_line_with_eos_and_the_vocabulary_is_by_frequency(tmp_path):
    data = write_ptb(tmp_path / "ptb", " the cat <unk> \n the dog\n", " the cat\n", " dog <unk>\n")
    corpus = load_ptb(data)
    assert corpus.vocab.tokens == ("<eos>", "the", "<unk>", "cat", "dog")  # counts 2, 2, 1, 1, 1; ties by string
    assert corpus.vocab.decode(corpus.train) == ["the", "cat", "<unk>", EOS, "the", "dog", EOS]
    assert corpus.vocab.decode(corpus.test) == ["dog", "<unk>", EOS]
    assert corpus.train.dtype == np.int32


def test_ptb_chars_and_their_readable_text(tmp_path):
    data = write_ptb(tmp_path / "ptb", " a _ b c \n c a\n", " a b\n", " b\n", char=True)
    corpus = load_ptb(data, "ptb_chars")
    tokens = corpus.vocab.decode(corpus.train)
    assert tokens == ["a", "_", "b", "c", EOS, "c", "a", EOS]
    assert join_tokens(tokens, "ptb_chars") == "a bc\nca\n"
    assert split_prime("a bc", "ptb_chars") == ["a", "_", "b", "c"]
    bad = write_ptb(tmp_path / "bad", " a _ bc\n", " a\n", " a\n", char=True)
    with pytest.raises(DataError, match=r"ptb.char.train.txt:1: expected single characters .* found 'bc'"):
        load_ptb(bad, "ptb_chars")


def test_chars_split_by_position_with_the_whole_file_as_vocabulary(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("abcabcabcz")
    corpus = load_chars(path, valid_fraction=0.2)
    assert "".join(corpus.vocab.decode(corpus.train)) == "abcabcab"
    assert "".join(corpus.vocab.decode(corpus.valid)) == "cz"  # z only in valid: still in the vocabulary
    assert corpus.test is None
    with pytest.raises(DataError, match="no test split"):
        corpus.split("test")


def test_bad_files_give_one_line_errors_naming_them(tmp_path):
    with pytest.raises(DataError, match=r"missing.txt: no such file"):
        read_text(tmp_path / "missing.txt")
    (tmp_path / "binary.txt").write_bytes(b"ok\xff\xfe")
    with pytest.raises(DataError, match=r"binary.txt: not UTF-8 text"):
        read_text(tmp_path / "binary.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match=r"empty.txt: empty file"):
        read_text(tmp_path / "empty.txt")
    with pytest.raises(DataError, match=r"nowhere: no such directory"):
        load_ptb(tmp_path / "nowhere")
    data = write_ptb(tmp_path / "ptb", " a b\n", " a zebra\n", " a\n")
    with pytest.raises(DataError, match=r"ptb.valid.txt: token 'zebra' is not in the vocabulary"):
        load_ptb(data)
    (tmp_path / "tiny.txt").write_text("ab")
    with pytest.raises(DataError, match="too short"):
        load_chars(tmp_path / "tiny.txt")
    with pytest.raises(ValueError, match="unknown corpus format 'xml'"):
        load_corpus("xml", tmp_path)


def test_vocabulary_round_trips_through_its_file(tmp_path):
    vocab = Vocab.build(tokens_of("héllo wörld\n", "chars"))
    vocab.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json") == vocab
    assert vocab.decode(vocab.encode(list("hé"))) == ["h", "é"]
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"bad\.json: not a seqjax vocabulary"):
        Vocab.load(tmp_path / "bad.json")


@pytest.mark.skipif(not PTB.is_dir(), reason=f"{PTB} not present (the shared PTB data)")
def test_real_ptb_has_the_standard_vocabulary_and_token_counts():
    corpus = load_ptb(PTB)
    assert len(corpus.vocab) == 10000
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (929589, 73760, 82430)
    chars = load_ptb(PTB, "ptb_chars")
    assert len(chars.vocab) == 50  # 49 symbols and <eos>


@pytest.mark.skipif(not SHAKESPEARE.is_file(), reason=f"{SHAKESPEARE} not present (the shared Tiny Shakespeare)")
def test_real_tiny_shakespeare_has_65_characters_and_a_90_10_split():
    corpus = load_chars(SHAKESPEARE)
    assert len(corpus.vocab) == 65
    assert len(corpus.train) + len(corpus.valid) == 1115394
    assert len(corpus.train) == round(0.9 * 1115394)
