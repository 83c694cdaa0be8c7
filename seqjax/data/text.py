"""Text corpora for language models: reading, vocabularies, token ids.

Three corpus formats, each read from a path and checked as it is read:

- ``ptb_words``: Mikolov's Penn Treebank files (``ptb.{train,valid,test}.txt``): whitespace-separated
  words, one sentence per line; every line ends with the token ``<eos>`` (as in Mikolov's and
  Zaremba's readers); ``<unk>`` is an ordinary word of the 10k vocabulary.
- ``ptb_chars``: the character version (``ptb.char.*.txt``): symbols separated by spaces, ``_``
  between words; every line ends with ``<eos>``.
- ``chars``: any UTF-8 text as a sequence of characters (newlines included), e.g. Tiny Shakespeare.

Errors are ``DataError`` with one line naming the file and what was expected.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import os
import types
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from seqjax import workdir

EOS = "<eos>"
FORMATS = ("ptb_words", "ptb_chars", "chars")


class DataError(ValueError):
    """A data file that is missing, unreadable or not in the expected format."""


def read_text(path: str | os.PathLike) -> str:
    """The whole file as UTF-8 text; ``DataError`` if it is missing, not a file, not UTF-8 or empty."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from e
    if not text.strip():
        raise DataError(f"{path}: empty file, expected text")
    return text


def check_encoding(name: str) -> None:
    """``ValueError`` unless Python knows the text encoding ``name``."""
    try:
        codecs.lookup(name)
    except LookupError:
        raise ValueError(f"unknown text encoding {name!r} (e.g. utf-8, latin-1)") from None


def read_lines(path: str | os.PathLike) -> list[str]:
    """``read_text(path)`` cut at ``\n`` alone (``splitlines`` also cuts at ``\x85``, ``\u2028``, ... in a line)."""
    return read_text(path).split("\n")


def shorten(line: str, limit: int = 60) -> str:
    """``repr(line)``, cut to its first ``limit`` characters: a bad line quoted in a one-line error."""
    return repr(line if len(line) <= limit else line[:limit] + "...")


def tokens_of(text: str, fmt: str, source: str = "<text>") -> list[str]:
    """The token sequence of a corpus text in format ``fmt`` (see the module docstring)."""
    if fmt == "chars":
        return list(text)
    if fmt not in FORMATS:
        raise ValueError(f"unknown corpus format {fmt!r}; known: {', '.join(FORMATS)}")
    tokens = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if fmt == "ptb_chars" and any(len(w) != 1 for w in words):
            bad = next(w for w in words if len(w) != 1)
            raise DataError(f"{source}:{number}: expected single characters separated by spaces, found {bad!r}")
        tokens += [*words, EOS]
    return tokens


def read_tokens(path: str | os.PathLike, fmt: str) -> list[str]:
    """``tokens_of(read_text(path), fmt)``."""
    return tokens_of(read_text(path), fmt, source=str(path))


@dataclasses.dataclass(frozen=True)
class Vocab:
    """A token <-> id map. ``tokens[i]`` is the token with id i."""

    tokens: tuple[str, ...]

    def __post_init__(self):
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("a vocabulary may not list a token twice")
        object.__setattr__(self, "_index", {token: i for i, token in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def index(self) -> Mapping[str, int]:
        """token -> id, read-only (for encoders that need ``.get`` with their own fallback)."""
        return types.MappingProxyType(self._index)

    @classmethod
    def build(cls, tokens: Iterable[str]) -> Vocab:
        """Every distinct token, most frequent first, ties in string order (Zaremba's PTB reader's order)."""
        counts = Counter(tokens)
        return cls(tuple(sorted(counts, key=lambda token: (-counts[token], token))))

    def encode(self, tokens: Sequence[str], source: str = "the input") -> np.ndarray:
        """``[len(tokens)]`` int32 ids; ``DataError`` naming ``source`` and the first unknown token."""
        index = self._index  # type: ignore[attr-defined]
        try:
            return np.fromiter((index[token] for token in tokens), dtype=np.int32, count=len(tokens))
        except KeyError as e:
            raise DataError(f"{source}: token {e.args[0]!r} is not in the vocabulary ({len(self)} tokens)") from None

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def save(self, path: str | os.PathLike) -> None:
        workdir.write_atomic(path, json.dumps({"tokens": list(self.tokens)}, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        try:
            return cls(tuple(json.loads(read_text(path))["tokens"]))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{path}: not a seqjax vocabulary (expected JSON {{'tokens': [...]}})") from e


def join_tokens(tokens: Sequence[str], fmt: str) -> str:
    """Readable text from tokens: characters joined (``_`` as a space for PTB chars), words with spaces."""
    if fmt == "chars":
        return "".join(tokens)
    lines = " ".join(tokens).replace(f" {EOS} ", "\n").replace(EOS, "\n")
    if fmt == "ptb_chars":
        lines = "\n".join(line.replace(" ", "").replace("_", " ") for line in lines.split("\n"))
    return lines


def split_prime(text: str, fmt: str) -> list[str]:
    """Typed text as tokens of ``fmt``: characters, words (split on spaces), or PTB characters (``_`` for a space)."""
    if fmt == "chars":
        return list(text)
    if fmt == "ptb_chars":
        return ["_" if c == " " else c for c in text]
    return text.split()
