"""Token tagging data (many-to-many): CoNLL-U files, word/character/tag vocabularies, padded batches.

Format (``../shared/data/ud_english_ewt/en_ewt-ud-{train,dev,test}.conllu``, https://universaldependencies.org/format.html):
UTF-8; sentences separated by blank lines; ``#`` lines are comments; every other line is a token line of
10 tab-separated columns ``ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC``. Multiword-token range
lines (ID ``3-4``) and empty nodes (ID ``5.1``) are skipped: the tagged words are the lines whose ID is
an integer. Each sentence gives its FORM list and its UPOS list. A problem is a ``DataError`` with one
line naming the file and the line number.

Vocabularies (built from train):

- words: ``seqjax.data.sentiment.build_vocab`` of the lower-cased forms (``<pad>`` = 0, ``<unk>`` = 1,
  then the words seen ``>= min_count`` times): rare training words become ``<unk>`` too, so its
  embedding is trained.
- characters: ``<pad>`` = 0, ``<unk>`` = 1, then every character of train's original forms (case kept).
- tags: the UPOS values of all three splits in string order (a tag that train lacks is never predicted;
  with UD's 17 UPOS tags, every split of EWT has them all).

Batches are right-padded: ``words [b, t]`` int32, ``chars [b, t, w]`` int32 (each word's characters,
right-padded with ``<pad>``; a form longer than ``w = max_word_len`` keeps its first ``w - w // 2`` and
last ``w // 2`` characters, prefix and suffix being what tells a word's class), ``lengths [b]`` int32,
``tags [b, t]`` int32 (0 at padding: read them only at ``s < length``). ``t`` is the batch's longest
sentence rounded up to a multiple of ``pad_multiple``; sentences are never cut (every token is tagged).
Training order: ``seqjax.data.batching.epoch_batches`` (shuffled per epoch, bucketed by length).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from seqjax.data.sentiment import PAD, PAD_ID, UNK, UNK_ID, build_vocab, padded_length
from seqjax.data.text import DataError, Vocab, read_lines, shorten

SPLITS = ("train", "dev", "test")
COLUMNS = 10


@dataclasses.dataclass(frozen=True)
class Split:
    """One file's sentences: ``forms[i]`` (the FORM column, as written) tagged ``tags[i]`` (UPOS)."""

    forms: tuple[tuple[str, ...], ...]
    tags: tuple[tuple[str, ...], ...]
    source: str

    def __len__(self) -> int:
        return len(self.forms)

    @property
    def num_tokens(self) -> int:
        return sum(len(sentence) for sentence in self.forms)


@dataclasses.dataclass(frozen=True)
class Vocabularies:
    """Word (lower-cased), character and tag vocabularies, from the training split."""

    words: Vocab
    chars: Vocab
    tags: Vocab


@dataclasses.dataclass(frozen=True)
class Encoded:
    """A split as arrays: ``words [n, L]``, ``forms [n, L]`` (rows of ``spellings``) and ``tags [n, L]``
    int32, right-padded with 0 (L the longest sentence), ``lengths [n]`` int32, and ``spellings [m, w]``
    int32: the character ids of the split's distinct forms (row 0 is the padding's: all ``<pad>``)."""

    words: np.ndarray
    forms: np.ndarray
    tags: np.ndarray
    lengths: np.ndarray
    spellings: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())


@dataclasses.dataclass(frozen=True)
class TaggingData:
    vocabs: Vocabularies
    train: Encoded
    dev: Encoded
    test: Encoded


def read_split(path: str | os.PathLike) -> Split:
    """The sentences of one CoNLL-U file (module docstring); ``DataError`` naming file and line."""
    path = Path(path)
    lines = read_lines(path)
    forms, tags = [], []
    sentence_forms: list[str] = []
    sentence_tags: list[str] = []

    def end_sentence():
        if sentence_forms:
            forms.append(tuple(sentence_forms))
            tags.append(tuple(sentence_tags))
            sentence_forms.clear()
            sentence_tags.clear()

    for number, line in enumerate(lines, start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            end_sentence()
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != COLUMNS:
            raise DataError(f"{path}:{number}: expected {COLUMNS} tab-separated columns, found {len(fields)}: "
                            f"{shorten(line)}")  # fmt: skip
        token_id = fields[0]
        if "-" in token_id or "." in token_id:  # a multiword token's range, an empty node
            continue
        if not token_id.isascii() or not token_id.isdigit():
            raise DataError(f"{path}:{number}: the ID must be an integer, found {shorten(token_id)}")
        if not fields[1] or not fields[3]:
            raise DataError(f"{path}:{number}: empty FORM or UPOS: {shorten(line)}")
        sentence_forms.append(fields[1])
        sentence_tags.append(fields[3])
    end_sentence()
    if not forms:
        raise DataError(f"{path}: no sentences")
    return Split(tuple(forms), tuple(tags), str(path))


def build_vocabs(train: Split, min_count: int = 1, others: Sequence[Split] = ()) -> Vocabularies:
    """The vocabularies of the module docstring: words and characters of ``train``, tags of all splits."""
    words = build_vocab([[form.lower() for form in sentence] for sentence in train.forms], min_count)
    chars = sorted({c for sentence in train.forms for form in sentence for c in form} - {PAD, UNK})
    tags = sorted({tag for split in (train, *others) for sentence in split.tags for tag in sentence})
    return Vocabularies(words, Vocab((PAD, UNK, *chars)), Vocab(tuple(tags)))


def spell(form: str, chars: Vocab, max_word_len: int) -> list[int]:
    """The character ids of ``form`` (unknown -> ``UNK_ID``), cut to its first and last characters."""
    if len(form) > max_word_len:
        form = form[: max_word_len - max_word_len // 2] + form[len(form) - max_word_len // 2 :]
    index = chars.index
    return [index.get(c, UNK_ID) for c in form]


def encode(split: Split, vocabs: Vocabularies, max_word_len: int = 20) -> Encoded:
    """``split`` as arrays; ``DataError`` naming the file if it holds a tag that ``vocabs.tags`` lacks."""
    if max_word_len < 1:
        raise ValueError(f"max_word_len must be >= 1, got {max_word_len}")
    word_index = vocabs.words.index
    tag_index = vocabs.tags.index
    lengths = np.asarray([len(s) for s in split.forms], np.int32)
    shape = (len(split), int(lengths.max()))
    words, forms, tags = (np.zeros(shape, np.int32) for _ in range(3))
    form_index: dict[str, int] = {}
    for row, (sentence, sentence_tags) in enumerate(zip(split.forms, split.tags, strict=True)):
        n = len(sentence)
        words[row, :n] = [word_index.get(form.lower(), UNK_ID) for form in sentence]
        forms[row, :n] = [form_index.setdefault(form, len(form_index) + 1) for form in sentence]
        try:
            tags[row, :n] = [tag_index[tag] for tag in sentence_tags]
        except KeyError as e:
            raise DataError(f"{split.source}: the tag {e.args[0]!r} is not in the tag set") from None
    spellings = np.full((len(form_index) + 1, max_word_len), PAD_ID, np.int32)
    for form, i in form_index.items():
        ids = spell(form, vocabs.chars, max_word_len)
        spellings[i, : len(ids)] = ids
    return Encoded(words, forms, tags, lengths, spellings)


def split_paths(directory: str | os.PathLike, prefix: str = "en_ewt-ud") -> dict[str, Path]:
    return {split: Path(directory) / f"{prefix}-{split}.conllu" for split in SPLITS}


def load_conllu(
    directory: str | os.PathLike, min_count: int = 1, max_word_len: int = 20, prefix: str = "en_ewt-ud"
) -> TaggingData:
    """``{prefix}-{train,dev,test}.conllu`` of ``directory``, checked, with the training split's vocabularies."""
    if not Path(directory).is_dir():
        raise DataError(f"{directory}: no such directory (expected {prefix}-{{train,dev,test}}.conllu)")
    splits = {name: read_split(path) for name, path in split_paths(directory, prefix).items()}
    vocabs = build_vocabs(splits["train"], min_count, [splits["dev"], splits["test"]])
    return TaggingData(vocabs, *(encode(splits[name], vocabs, max_word_len) for name in SPLITS))


def take(data: Encoded, indices: np.ndarray, pad_multiple: int = 1) -> tuple[np.ndarray, ...]:
    """``(words [b, t], chars [b, t, w], lengths [b], tags [b, t])`` of the sentences ``indices [b]``."""
    lengths = data.lengths[indices]
    width = padded_length(int(lengths.max()), pad_multiple)
    stored = min(width, data.words.shape[1])
    words, forms, tags = (np.zeros((len(indices), width), np.int32) for _ in range(3))
    for padded, source in ((words, data.words), (forms, data.forms), (tags, data.tags)):
        padded[:, :stored] = source[indices, :stored]
    return words, data.spellings[forms], lengths, tags  # chars: [b, t, w]


def eval_batches(data: Encoded, batch_size: int, pad_multiple: int = 1) -> Iterator[tuple[np.ndarray, ...]]:
    """Every sentence once, in batches of ``batch_size`` sorted by length.

    Yields ``(indices [b'], words, chars, lengths, tags)`` as ``take``; the last batch is filled up to
    ``batch_size`` with repeats of its first sentence, and ``indices`` lists only its real sentences,
    which come first.
    """
    order = np.argsort(data.lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        filled = np.concatenate([indices, np.full(batch_size - len(indices), indices[0])])
        yield (indices, *take(data, filled, pad_multiple))
