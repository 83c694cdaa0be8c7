"""The word2vec C tool's vector files, text and binary (what gensim's ``load/save_word2vec_format`` read and write).

Both start with the header line ``"{v} {d}\\n"`` (v words, d floats each), then one record per word, in the
file's order (word2vec writes the most frequent words first):

- text: ``word f1 f2 ... fd\\n``, fields separated by single spaces (word2vec.c also writes a space before the
  newline; it is ignored on reading). We write ``%.9g``, which reads back to the same float32 exactly.
- binary: the word's UTF-8 bytes, one space, d little-endian float32 (4 d bytes), then ``\\n``. word2vec.c writes
  the newline and gensim 4 does not (it strips a leading newline from the next word instead); on reading, a single
  ``\\n`` after the floats is skipped if present.

The functions here read and write plain arrays: v words and their ``[v, d]`` float32 vectors
(``seqjax.models.word_vectors`` wraps them in its ``WordVectors`` table). Words may not contain whitespace (nor be
empty): the formats could not delimit them; nor may a word appear twice. Files are written atomically
(a temporary file in the same directory, then ``os.replace``), so a failed save never leaves a half-written file in
place of a good one. Reading checks everything and raises ``DataError`` with one line naming the file and what was
expected.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqjax import workdir
from seqjax.data.text import DataError

_FLOAT32_LE = np.dtype("<f4")


def _check_table(words: Sequence[str], vectors: np.ndarray) -> None:
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise ValueError(f"vectors must have shape [{len(words)}, d] (one row per word), got {vectors.shape}")
    first = {}
    for i, word in enumerate(words):
        if not isinstance(word, str):
            raise TypeError(f"word {i} is a {type(word).__name__}, not a string")
        if not word or word.split() != [word]:
            raise ValueError(
                f"word {i} ({word!r}) is empty or contains whitespace; the word2vec formats cannot store it"
            )
        if first.setdefault(word, i) != i:
            raise ValueError(f"word {word!r} appears twice (at {first[word]} and {i})")


def _write_text(f, words: Sequence[str], vectors: np.ndarray) -> None:
    f.write(f"{len(words)} {vectors.shape[1]}\n".encode())
    for word, row in zip(words, vectors.tolist(), strict=True):
        f.write(f"{word} {' '.join(f'{x:.9g}' for x in row)}\n".encode())


def _write_binary(f, words: Sequence[str], vectors: np.ndarray) -> None:
    f.write(f"{len(words)} {vectors.shape[1]}\n".encode())
    rows = vectors.astype(_FLOAT32_LE, copy=False)
    for word, row in zip(words, rows, strict=True):
        f.write(word.encode() + b" " + row.tobytes() + b"\n")


def write_word2vec(path: str | os.PathLike, words: Sequence[str], vectors: np.ndarray, binary: bool) -> None:
    """Writes ``words`` and their ``vectors`` to ``path`` in word2vec's binary or text format, atomically.

    Args:
      path: the file to (over)write; its directory must exist.
      words: v distinct words, none empty or containing whitespace (``ValueError`` otherwise).
      vectors: [v, d] floating; written as float32.
      binary: the binary format if True, else text.
    """
    path = Path(path)
    vectors = np.asarray(vectors, dtype=np.float32)
    _check_table(words, vectors)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            (_write_binary if binary else _write_text)(f, words, vectors)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, workdir.new_file_mode())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_header(path: Path, line: bytes) -> tuple[int, int]:
    try:
        fields = line.decode("ascii").split()
        v, d = (int(x) for x in fields)
        if v < 0 or d < 1:
            raise ValueError
    except ValueError:
        raise DataError(
            f"{path}: line 1: expected a header '<words> <dim>' (two integers), got {line[:80]!r}"
        ) from None
    return v, d


def _decode_word(path: Path, raw: bytes, where: str) -> str:
    try:
        word = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: {where}: word is not UTF-8 (byte {e.start} of {raw[:40]!r}: {e.reason})") from None
    if not word:
        raise DataError(f"{path}: {where}: expected a word, found an empty one")
    return word


def _read_text(path: Path, data: bytes) -> tuple[list[str], np.ndarray]:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final newline
    v, d = _read_header(path, lines[0])
    records = lines[1:]
    if len(records) < v:
        raise DataError(f"{path}: header says {v} words, the file has {len(records)} lines after it")
    if any(line.strip() for line in records[v:]):
        extra = sum(1 for line in records[v:] if line.strip())
        raise DataError(f"{path}: header says {v} words, the file has {v + extra} (non-empty lines after line {v + 1})")
    words = []
    vectors = np.empty((v, d), dtype=np.float32)
    for i, line in enumerate(records[:v]):
        where = f"line {i + 2}"
        word_bytes, _, rest = line.rstrip().partition(b" ")
        word = _decode_word(path, word_bytes, where)
        fields = rest.split()
        if len(fields) != d:
            raise DataError(f"{path}: {where}: expected {d + 1} fields (word + {d} floats), got {len(fields) + 1}")
        try:
            vectors[i] = np.array([float(x) for x in fields], dtype=np.float32)
        except ValueError:
            bad = next(x for x in fields if not _is_float(x))
            raise DataError(f"{path}: {where}: expected a float, got {bad[:40].decode(errors='replace')!r}") from None
        words.append(word)
    return words, vectors


def _is_float(x: bytes) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True


def _read_binary(path: Path, data: bytes) -> tuple[list[str], np.ndarray]:
    end = data.find(b"\n")
    v, d = _read_header(path, data if end < 0 else data[:end])
    pos = len(data) if end < 0 else end + 1
    nbytes = 4 * d
    words = []
    vectors = np.empty((v, d), dtype=np.float32)
    for i in range(v):
        where = f"record {i + 1} of {v} (byte {pos})"
        space = data.find(b" ", pos)
        if space < 0:
            raise DataError(
                f"{path}: truncated at {where}: expected a word and a space, got end of file ({i} words read)"
            )
        word = _decode_word(path, data[pos:space], where)
        if space + 1 + nbytes > len(data):
            raise DataError(
                f"{path}: truncated at {where}: expected {nbytes} bytes of floats after {word!r}, only "
                f"{len(data) - space - 1} remain ({i} words read)"
            )
        vectors[i] = np.frombuffer(data, dtype=_FLOAT32_LE, count=d, offset=space + 1)
        words.append(word)
        pos = space + 1 + nbytes
        if data[pos : pos + 1] == b"\n":
            pos += 1
    if data[pos:].strip():
        raise DataError(f"{path}: header says {v} words, but data follows record {v} (byte {pos} of {len(data)})")
    return words, vectors


def read_word2vec(path: str | os.PathLike, binary: bool) -> tuple[tuple[str, ...], np.ndarray]:
    """Reads a word2vec binary or text file (as written by word2vec.c, gensim or ``write_word2vec``).

    Args:
      path: the file.
      binary: whether it is in the binary format.

    Returns:
      ``(words, vectors)``: the v distinct words in file order and their [v, d] float32 vectors.

    Raises:
      DataError: the file is missing, its header is not ``"<v> <d>"``, a text line does not hold a word and d
        floats, a binary file ends before its v-th record, the number of records differs from the header, a word is
        not UTF-8, or a word appears twice.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {'not a regular file' if path.exists() else 'no such file'}")
    data = path.read_bytes()
    if not data:
        raise DataError(f"{path}: empty file, expected a header '<words> <dim>'")
    words, vectors = (_read_binary if binary else _read_text)(path, data)
    first = {}
    for i, word in enumerate(words):
        if first.setdefault(word, i) != i:
            raise DataError(f"{path}: word {word!r} appears twice (records {first[word] + 1} and {i + 1})")
    return tuple(words), vectors
