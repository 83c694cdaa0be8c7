"""Chunking data (many-to-many): the CoNLL-2000 files, a dev split carved from train, padded batches with POS.

Format (``../shared/data/conll2000/{train,test}.txt``, the CoNLL-2000 shared task): one token per line,
``word POS chunk`` separated by single spaces, a blank line between sentences. The POS tags are the Brill
tagger's (given at test time too, so a chunker may read them); the chunk tags are IOB2 (``O``, ``B-X``,
``I-X``; ``seqjax.chunk_f1``). A problem is a ``DataError`` with one line naming the file and the line.

The task has no dev split: ``carve_dev`` makes the LAST ``round(dev_fraction * n)`` training sentences
(10%: 894 of 8,936, the end of WSJ section 18) the dev split, the first ones the training split. It is
deterministic and contiguous (no article is split between train and dev except at the one cut).

Vocabularies, from the (carved) training split as ``seqjax.data.conllu``'s: lower-cased words (``min_count``),
characters of the original forms, and the chunk tags of all three splits in string order; POS tags:
``<pad>`` = 0, ``<unk>`` = 1, then train's POS tags by frequency (a test-only POS tag is ``<unk>``).
Batches are ``seqjax.data.conllu.take``'s plus ``pos [b, t]`` int32 (0 at padding).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from seqjax import chunk_f1
from seqjax.data import conllu
from seqjax.data.sentiment import UNK_ID, build_vocab
from seqjax.data.text import DataError, Vocab, read_lines, shorten

SPLITS = conllu.SPLITS
FILES = {"train": "train.txt", "test": "test.txt"}
COLUMNS = 3


@dataclasses.dataclass(frozen=True)
class Split:
    """One file's sentences: ``forms[i]`` (as written), their ``pos[i]`` tags and ``chunks[i]`` (IOB2) tags."""

    forms: tuple[tuple[str, ...], ...]
    pos: tuple[tuple[str, ...], ...]
    chunks: tuple[tuple[str, ...], ...]
    source: str

    def __len__(self) -> int:
        return len(self.forms)

    @property
    def num_tokens(self) -> int:
        return sum(len(sentence) for sentence in self.forms)

    def tagged(self) -> conllu.Split:
        """The forms tagged with their chunk tags, for ``seqjax.data.conllu``'s vocabularies and encoding."""
        return conllu.Split(self.forms, self.chunks, self.source)

    def sentences(self, start: int, stop: int, source: str) -> Split:
        return Split(self.forms[start:stop], self.pos[start:stop], self.chunks[start:stop], source)


@dataclasses.dataclass(frozen=True)
class Encoded(conllu.Encoded):
    """``seqjax.data.conllu.Encoded`` (``tags``: the chunk tags) and ``pos [n, L]`` int32 POS ids, 0 at padding."""

    pos: np.ndarray


@dataclasses.dataclass(frozen=True)
class ChunkingData:
    vocabs: conllu.Vocabularies  # words, characters, chunk tags
    pos: Vocab
    train: Encoded
    dev: Encoded
    test: Encoded


def read_split(path: str | os.PathLike) -> Split:
    """The sentences of one CoNLL-2000 file (module docstring); ``DataError`` naming file and line."""
    path = Path(path)
    lines = read_lines(path)
    sentences: list[tuple[tuple[str, ...], ...]] = []  # per sentence: (forms, pos, chunks)
    rows: list[list[str]] = []

    def end_sentence():
        if rows:
            sentences.append(tuple(zip(*rows, strict=True)))
            rows.clear()

    for number, line in enumerate(lines, start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            end_sentence()
            continue
        fields = line.split(" ")
        if len(fields) != COLUMNS or not all(fields):
            raise DataError(f"{path}:{number}: expected 3 space-separated columns 'word POS chunk', found "
                            f"{shorten(line)}")  # fmt: skip
        try:
            chunk_f1.split_tag(fields[2])
        except ValueError:
            found = shorten(fields[2])
            raise DataError(f"{path}:{number}: the chunk tag must be O, B-X or I-X, found {found}") from None
        rows.append(fields)
    end_sentence()
    if not sentences:
        raise DataError(f"{path}: no sentences")
    forms, pos, chunks = (tuple(column) for column in zip(*sentences, strict=True))
    return Split(forms, pos, chunks, str(path))


def carve_dev(train: Split, dev_fraction: float = 0.1) -> tuple[Split, Split]:
    """``(train, dev)``: the last ``round(dev_fraction * n)`` sentences are dev (module docstring)."""
    n = len(train)
    size = round(dev_fraction * n)
    if not 0 < size < n:
        raise DataError(f"{train.source}: {n} sentences, cannot carve a dev split of {dev_fraction:g} of them "
                        "(need at least one sentence on each side)")  # fmt: skip
    dev_source = f"{train.source} (dev: its last {size} sentences)"
    return train.sentences(0, n - size, train.source), train.sentences(n - size, n, dev_source)


def encode(split: Split, vocabs: conllu.Vocabularies, pos: Vocab, max_word_len: int = 20) -> Encoded:
    """``split`` as arrays: ``seqjax.data.conllu.encode`` of its chunk tags, and its POS ids (unknown: ``<unk>``)."""
    base = conllu.encode(split.tagged(), vocabs, max_word_len)
    pos_ids = np.zeros_like(base.tags)
    for row, sentence in enumerate(split.pos):
        pos_ids[row, : len(sentence)] = [pos.index.get(tag, UNK_ID) for tag in sentence]
    return Encoded(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)}, pos=pos_ids)


def split_paths(directory: str | os.PathLike) -> dict[str, Path]:
    return {split: Path(directory) / name for split, name in FILES.items()}


def load_conll2000(
    directory: str | os.PathLike, min_count: int = 1, max_word_len: int = 20, dev_fraction: float = 0.1
) -> ChunkingData:
    """``train.txt`` and ``test.txt`` of ``directory``, checked, dev carved from train, with train's vocabularies."""
    if not Path(directory).is_dir():
        raise DataError(f"{directory}: no such directory (expected the CoNLL-2000 train.txt and test.txt)")
    paths = split_paths(directory)
    train, dev = carve_dev(read_split(paths["train"]), dev_fraction)
    splits = {"train": train, "dev": dev, "test": read_split(paths["test"])}
    vocabs = conllu.build_vocabs(train.tagged(), min_count, [splits["dev"].tagged(), splits["test"].tagged()])
    pos = build_vocab(train.pos, 1)
    return ChunkingData(vocabs, pos, *(encode(splits[name], vocabs, pos, max_word_len) for name in SPLITS))


def take(data: Encoded, indices: np.ndarray, pad_multiple: int = 1) -> tuple[np.ndarray, ...]:
    """``(words [b, t], chars [b, t, w], lengths [b], tags [b, t], pos [b, t])`` of the sentences ``indices [b]``."""
    words, chars, lengths, tags = conllu.take(data, indices, pad_multiple)
    pos = np.zeros_like(words)
    stored = min(pos.shape[1], data.pos.shape[1])
    pos[:, :stored] = data.pos[indices, :stored]
    return words, chars, lengths, tags, pos


def eval_batches(data: Encoded, batch_size: int, pad_multiple: int = 1) -> Iterator[tuple[np.ndarray, ...]]:
    """``seqjax.data.conllu.eval_batches`` with ``pos``: ``(indices [b'], words, chars, lengths, tags, pos)``."""
    order = np.argsort(data.lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        filled = np.concatenate([indices, np.full(batch_size - len(indices), indices[0])])
        yield (indices, *take(data, filled, pad_multiple))
