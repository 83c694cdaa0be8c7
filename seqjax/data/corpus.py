"""A language-modelling corpus: a vocabulary and the train / valid / test token ids.

- ``ptb_words`` / ``ptb_chars``: ``<dir>/ptb.{train,valid,test}.txt`` or ``<dir>/ptb.char.{...}.txt``;
  the vocabulary is the training split's (every valid/test token must be in it).
- ``chars``: one text file; the first ``1 - valid_fraction`` of its characters train, the rest is the
  validation split (no test split); the vocabulary is every character of the file (char-rnn's choice).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from seqjax.data.text import DataError, Vocab, read_text, read_tokens, tokens_of

SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Token ids ``[n]`` int32 per split (``test`` may be None) and the vocabulary they index."""

    vocab: Vocab
    fmt: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray | None

    def split(self, name: str) -> np.ndarray:
        ids = getattr(self, name)
        if ids is None:
            raise DataError(f"this {self.fmt} corpus has no {name} split")
        return ids


def ptb_paths(directory: str | os.PathLike, fmt: str) -> dict[str, Path]:
    middle = "char." if fmt == "ptb_chars" else ""
    return {split: Path(directory) / f"ptb.{middle}{split}.txt" for split in SPLITS}


def load_ptb(directory: str | os.PathLike, fmt: str = "ptb_words") -> Corpus:
    """Mikolov's PTB (``fmt`` ``ptb_words`` or ``ptb_chars``) from ``directory``."""
    if not Path(directory).is_dir():
        raise DataError(f"{directory}: no such directory (expected the PTB files ptb.train.txt, ...)")
    paths = ptb_paths(directory, fmt)
    tokens = {split: read_tokens(path, fmt) for split, path in paths.items()}
    vocab = Vocab.build(tokens["train"])
    ids = {split: vocab.encode(tokens[split], source=str(paths[split])) for split in SPLITS}
    return Corpus(vocab, fmt, ids["train"], ids["valid"], ids["test"])


def load_chars(path: str | os.PathLike, valid_fraction: float = 0.1) -> Corpus:
    """A plain text file as characters, split by position into train and valid."""
    if not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    tokens = tokens_of(read_text(path), "chars")
    vocab = Vocab.build(tokens)
    ids = vocab.encode(tokens, source=str(path))
    cut = round(len(ids) * (1 - valid_fraction))
    if cut < 2 or len(ids) - cut < 2:
        raise DataError(f"{path}: too short to split into train and valid ({len(ids)} characters)")
    return Corpus(vocab, "chars", ids[:cut], ids[cut:], None)


def load_corpus(fmt: str, path: str | os.PathLike, valid_fraction: float = 0.1) -> Corpus:
    """``load_ptb(path, fmt)`` for the PTB formats, ``load_chars(path)`` for ``chars``."""
    if fmt == "chars":
        return load_chars(path, valid_fraction)
    if fmt in ("ptb_words", "ptb_chars"):
        return load_ptb(path, fmt)
    raise ValueError(f"unknown corpus format {fmt!r}; known: ptb_words, ptb_chars, chars")
