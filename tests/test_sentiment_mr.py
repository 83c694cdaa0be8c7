"""Movie Review polarity (MR) and --init_embeddings: the Latin-1 reader, the folds, word2vec rows, end to end."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import sentiment

from seqjax import config as config_lib
from seqjax import experiment as ex
from seqjax import workdir
from seqjax.data import sentiment as data_lib
from seqjax.data.text import DataError, Vocab

ROOT = Path(__file__).resolve().parents[1]
MR = ROOT.parent / "shared" / "data" / "mr"


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- the reader ---------------------------------------------------------------------------------------------------


def test_reader_decodes_latin1_bytes_and_splits_on_ascii_whitespace_only(tmp_path):
    write_bytes(tmp_path / "rt-polarity.pos", b"a clich\xe9 , but fun . \ninterwoven\x85 [the  film]\tworks\r\n")
    write_bytes(tmp_path / "rt-polarity.neg", b"\xc9CLAIR and dull\n")  # no final newline needed either way
    pos = data_lib.read_polarity(tmp_path / "rt-polarity.pos")
    # 0xe9 is é in Latin-1 and cp1252; 0x85 (cp1252's ellipsis, Unicode NEL) is part of its token, not a space.
    assert pos == (("a", "clich\u00e9", ",", "but", "fun", "."), ("interwoven\u0085", "[the", "film]", "works"))
    split = data_lib.read_mr(tmp_path)
    assert split.sentences == (*pos, ("\u00e9clair", "and", "dull"))  # positive first; É lower-cased to é
    assert split.labels.tolist() == [1, 1, 0] and split.labels.dtype == np.int32


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"good\n\nbad\n", ":2: empty line, expected a sentence"),
        (b"good\n \r\n", ":2: empty line"),
        (b"fine\nun clich\xc3\xa9\n", ":2: the file is UTF-8 (a re-encoded copy?), expected MR's Latin-1/cp1252 bytes"),
        ("good film\n".encode("utf-16-le"), ":1: control byte b'\\x00' at byte 2 of the line"),
        (b"", ": empty file, expected one sentence per line"),
    ],
    ids=["empty-line", "blank-crlf-line", "utf8", "utf16", "empty-file"],
)
def test_malformed_mr_files_are_one_line_errors_naming_file_and_line(tmp_path, content, message):
    path = write_bytes(tmp_path / "rt-polarity.pos", content)
    with pytest.raises(DataError) as info:
        data_lib.read_polarity(path)
    assert str(info.value).startswith(f"{path}{message}") and "\n" not in str(info.value)


def test_a_missing_mr_file_or_directory(tmp_path):
    write_bytes(tmp_path / "rt-polarity.pos", b"good\n")
    with pytest.raises(DataError, match=f"^{tmp_path / 'rt-polarity.neg'}: no such file"):
        data_lib.read_mr(tmp_path)
    with pytest.raises(DataError, match=f"^{tmp_path / 'nowhere'}: no such directory"):
        data_lib.read_mr(tmp_path / "nowhere")


# -- the folds ----------------------------------------------------------------------------------------------------


def test_folds_partition_the_examples_and_are_fixed():
    n, folds = 23, 5
    every_test = []
    for fold in range(folds):
        parts = data_lib.fold_indices(n, folds, fold)
        train, dev, test = (parts[name].tolist() for name in ("train", "dev", "test"))
        assert sorted(train + dev + test) == list(range(n))  # disjoint and complete
        assert len(test) == [5, 5, 5, 4, 4][fold] and len(dev) == round(0.1 * (n - len(test))) == 2
        assert {k: v.tolist() for k, v in data_lib.fold_indices(n, folds, fold).items()} == parts | {
            "train": train,
            "dev": dev,
            "test": test,
        }  # the same folds on every call (a fixed seed)
        every_test += test
    assert sorted(every_test) == list(range(n))  # every example in exactly one test fold
    assert every_test != list(range(n))  # shuffled, not consecutive
    other = data_lib.fold_indices(n, folds, 0, seed=data_lib.MR_SHUFFLE_SEED + 1)["test"]
    assert other.tolist() != data_lib.fold_indices(n, folds, 0)["test"].tolist()
    with pytest.raises(ValueError, match="0 <= fold < folds"):
        data_lib.fold_indices(n, folds, folds)
    with pytest.raises(DataError, match="too few"):
        data_lib.fold_indices(4, 2, 0)  # 2 training examples: round(0.2) = 0 for dev


@pytest.mark.skipif(not MR.is_dir(), reason=f"{MR} not present (the shared MR data)")
def test_the_real_mr_files():
    split = data_lib.read_mr(MR)
    assert len(split) == 10662 and int(split.labels.sum()) == 5331  # shared/data/README.md: 5,331 lines each
    assert split.sentences[489][:1] == ("exquisitely",) and "interwoven\u0085" in split.sentences[489]  # pos line 490
    sizes = [len(data_lib.fold_indices(len(split), 10, k)["test"]) for k in range(10)]
    assert sizes == [1067, 1067] + [1066] * 8


# -- --init_embeddings --------------------------------------------------------------------------------------------

VOCAB = Vocab(("<pad>", "<unk>", "good", "bad", "plot"))
WORDS = {"<unk>": [9, 9, 9], "good": [1, 2, 3], "bad": [-1, 0.5, 0], "film": [7, 7, 7]}  # film: not in VOCAB


def word2vec_file(path: Path, words=WORDS) -> Path:
    """The word2vec text format by hand, or binary (little-endian float32) if ``path`` ends in .bin."""
    dim = len(next(iter(words.values())))
    if path.suffix == ".bin":
        records = b"".join(w.encode() + b" " + struct.pack(f"<{dim}f", *v) + b"\n" for w, v in words.items())
        return write_bytes(path, f"{len(words)} {dim}\n".encode() + records)
    lines = [f"{len(words)} {dim}"] + [f"{w} {' '.join(map(str, v))} " for w, v in words.items()]
    return write_bytes(path, ("\n".join(lines) + "\n").encode())


@pytest.mark.parametrize("name", ["vectors.txt", "vectors.bin"])
def test_init_embeddings_replace_the_rows_of_words_found(tmp_path, name):
    path = word2vec_file(tmp_path / name)
    vectors = sentiment.load_init_vectors(sentiment.Config(init_embeddings=str(path), embed=3))
    embedding = np.arange(15, dtype=np.float32).reshape(5, 3)
    got, found = sentiment.initialise_embedding(embedding, VOCAB, vectors)
    expected = [[0, 1, 2], [3, 4, 5], [1, 2, 3], [-1, 0.5, 0], [12, 13, 14]]  # <pad>, <unk> and plot kept
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected, np.float32))
    assert found == 2 and got.dtype == np.float32
    assert sentiment.load_init_vectors(sentiment.Config(embed=3)) is None  # the default: no file


def test_init_embeddings_of_another_dimension_is_a_one_line_error_naming_flag_file_and_sizes(tmp_path):
    path = word2vec_file(tmp_path / "vectors.txt")
    with pytest.raises(DataError) as info:
        sentiment.load_init_vectors(sentiment.Config(init_embeddings=str(path), embed=300))
    message = str(info.value)
    assert message.startswith(f"--init_embeddings={path}: the file's vectors have 3 dimensions, --embed=300")
    assert "\n" not in message
    with pytest.raises(DataError, match=f"^--init_embeddings: {tmp_path / 'no.bin'}: no such file"):
        sentiment.load_init_vectors(sentiment.Config(init_embeddings=str(tmp_path / "no.bin"), embed=3))


# -- the workdir ------------------------------------------------------------------------------------------------
# (MR end to end: tests/test_sentiment.py, beside SST-2's, whose compiled step it shares)


def test_a_run_recorded_before_the_new_flags_resumes_with_their_defaults(tmp_path):
    old = {k: v for k, v in config_lib.flat(sentiment.Config()).items()
           if k not in ("dataset", "folds", "fold", "init_embeddings")}  # fmt: skip
    for run in ("sst2", "mr"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "flags.json").write_text(json.dumps({"experiment": "sentiment", "flags": old}))
    ex.check_workdir(sentiment.EXPERIMENT, sentiment.Config(epochs=5), tmp_path / "sst2")
    with pytest.raises(workdir.WorkdirError, match=r"made with --data=.*sst2, this run has --data=.*mr"):
        ex.check_workdir(sentiment.EXPERIMENT, sentiment.Config(dataset="mr"), tmp_path / "mr")
