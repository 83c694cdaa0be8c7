"""word2vec text and binary files: round trips, compatibility with gensim both ways, one-line errors.

The format reads and writes plain words and arrays; ``WordVectors``' own ``load_word2vec`` and ``save_word2vec`` wrap
it (tests/test_word_vectors.py)."""

import os
import stat

import numpy as np
import pytest

from seqjax.data import word2vec_format
from seqjax.data.text import DataError
from seqjax.data.word2vec_format import read_word2vec, write_word2vec

WORDS = ("the", "café", "naïve", "日本語", "emoji🙂", "</s>", "x")


def example_vectors(d=5, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((len(WORDS), d)).astype(np.float32) * np.float32(10.0) ** rng.integers(-6, 4, (1, d))
    vectors[-1] = 0
    return vectors.astype(np.float32)


@pytest.mark.parametrize("binary", [False, True])
def test_round_trip_is_exact(tmp_path, binary):
    vectors = example_vectors()
    path = tmp_path / "vectors.bin"
    write_word2vec(path, WORDS, vectors, binary=binary)
    words, loaded = read_word2vec(path, binary=binary)
    assert words == WORDS
    # Binary stores the float32 bits; text writes %.9g, which reads back to the same float32.
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, vectors)
    assert sorted(os.listdir(tmp_path)) == ["vectors.bin"]  # no temporary file left
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # as open() would make it, not mkstemp's 0600


def test_binary_layout_and_records_without_newline(tmp_path):
    vectors = example_vectors(d=2)
    path = tmp_path / "v.bin"
    write_word2vec(path, WORDS, vectors, binary=True)
    data = path.read_bytes()
    record = "café".encode() + b" " + vectors[WORDS.index("café")].astype("<f4").tobytes() + b"\n"
    assert data.startswith(f"{len(WORDS)} 2\n".encode()) and record in data
    assert len(data) == len(f"{len(WORDS)} 2\n") + sum(len(w.encode()) + 2 + 8 for w in WORDS)
    # gensim 4 writes no newline after each vector; both layouts read the same.
    gensim_style = f"{len(WORDS)} 2\n".encode() + b"".join(
        w.encode() + b" " + v.astype("<f4").tobytes() for w, v in zip(WORDS, vectors, strict=True)
    )
    path.write_bytes(gensim_style)
    np.testing.assert_array_equal(read_word2vec(path, binary=True)[1], vectors)


def test_text_reads_word2vec_c_trailing_spaces(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("2 3\nthe 0.1 -2 3e-4 \nof 1.000000 2.000000 3.000000 \n")
    words, vectors = read_word2vec(path, binary=False)
    assert words == ("the", "of")
    np.testing.assert_allclose(vectors, [[0.1, -2, 3e-4], [1, 2, 3]], rtol=1e-7)


def test_save_rejects_bad_tables_and_failed_save_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "v.txt"
    write_word2vec(path, WORDS, example_vectors(), binary=False)
    good = path.read_bytes()
    with pytest.raises(ValueError, match="whitespace"):
        write_word2vec(path, ("a b", "c"), np.ones((2, 2)), binary=False)
    with pytest.raises(ValueError, match="'a' appears twice"):
        write_word2vec(path, ("a", "a"), np.ones((2, 2)), binary=False)
    with pytest.raises(ValueError, match="shape"):
        write_word2vec(path, ("a", "b"), np.ones((3, 2)), binary=False)
    with pytest.raises(TypeError, match="not a string"):
        write_word2vec(path, ("a", 1), np.ones((2, 2)), binary=False)

    def fail_midway(f, words, vectors):
        f.write(b"2 2\nhalf")
        raise OSError("disk full")

    monkeypatch.setattr(word2vec_format, "_write_text", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        write_word2vec(path, WORDS, example_vectors(), binary=False)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["v.txt"]


@pytest.mark.parametrize("binary", [False, True])
def test_gensim_reads_ours(tmp_path, binary):
    gensim_models = pytest.importorskip("gensim.models")
    vectors = example_vectors(d=7, seed=1)
    path = tmp_path / "ours.w2v"
    write_word2vec(path, WORDS, vectors, binary=binary)
    kv = gensim_models.KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert tuple(kv.index_to_key) == WORDS
    np.testing.assert_array_equal(kv.vectors, vectors)


@pytest.mark.parametrize("binary", [False, True])
def test_we_read_gensims(tmp_path, binary):
    gensim_models = pytest.importorskip("gensim.models")
    vectors = example_vectors(d=7, seed=2)
    kv = gensim_models.KeyedVectors(vector_size=7)
    kv.add_vectors(list(WORDS), vectors)
    path = tmp_path / "theirs.w2v"
    kv.save_word2vec_format(str(path), binary=binary)
    words, loaded = read_word2vec(path, binary=binary)
    assert words == WORDS
    # gensim writes str(np.float32), the shortest repr that reads back exactly.
    np.testing.assert_array_equal(loaded, vectors)


def record(word: bytes, values) -> bytes:
    return word + b" " + np.asarray(values, dtype="<f4").tobytes() + b"\n"


BAD_FILES = {
    # name: (binary, contents, expected message fragment)
    "missing": (False, None, "no such file"),
    "empty": (False, b"", "empty file"),
    "header_one_field": (False, b"3\nthe 1 2\n", "line 1: expected a header"),
    "header_not_int": (True, b"3 x\n", "line 1: expected a header"),
    "header_negative": (False, b"-1 2\n", "line 1: expected a header"),
    "text_too_few_fields": (False, b"2 3\nthe 1 2 3\nof 1 2\n", "line 3: expected 4 fields (word + 3 floats), got 3"),
    "text_too_many_fields": (False, b"1 2\nthe 1 2 3\n", "line 2: expected 3 fields (word + 2 floats), got 4"),
    "text_not_float": (False, b"1 2\nthe 1 abc\n", "line 2: expected a float, got 'abc'"),
    "text_fewer_words": (False, b"3 2\nthe 1 2\nof 3 4\n", "header says 3 words, the file has 2 lines"),
    "text_more_words": (False, b"1 2\nthe 1 2\nof 3 4\n", "header says 1 words, the file has 2"),
    "text_not_utf8": (False, b"1 2\nth\xffe 1 2\n", "line 2: word is not UTF-8"),
    "text_duplicate": (False, b"2 1\nthe 1\nthe 2\n", "word 'the' appears twice (records 1 and 2)"),
    "binary_truncated_vector": (
        True,
        b"3 2\n" + record(b"the", [1, 2]) + record(b"of", [3, 4])[:7],
        "truncated at record 2 of 3 (byte 17): expected 8 bytes of floats after 'of', only 4 remain (1 words read)",
    ),
    "binary_truncated_word": (True, b"3 2\n" + record(b"the", [1, 2]) + b"o", "got end of file (1 words read)"),
    "binary_more_words": (True, b"1 2\n" + record(b"the", [1, 2]) + record(b"of", [3, 4]), "data follows record 1"),
    "binary_not_utf8": (True, b"1 2\n" + record(b"\xc3\x28", [1, 2]), "record 1 of 1 (byte 4): word is not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_raise_one_line_data_error_naming_the_file(tmp_path, case):
    binary, contents, fragment = BAD_FILES[case]
    path = tmp_path / f"{case}.w2v"
    if contents is not None:
        path.write_bytes(contents)
    with pytest.raises(DataError) as info:
        read_word2vec(path, binary=binary)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert fragment in message
