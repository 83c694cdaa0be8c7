"""Sentence classification data: SST-2 and Movie Review polarity (MR), a vocabulary, padded batches.

Format (``../shared/data/sst2/{train,dev,test}.tsv``, see ``shared/data/README.md``): UTF-8, one example
per line, ``label<TAB>text`` with ``label`` 0 (negative) or 1 (positive), after one header line
``label<TAB>sentence`` (train) or ``label<TAB>content`` (dev, test). The column order is NOT GLUE's
(``sentence<TAB>label``). The text is already tokenized: tokens are the lower-cased text split on
whitespace. Every line is checked as it is read; a problem is a ``DataError`` with one line naming the
file and the line number.

Vocabulary (``build_vocab``): ``<pad>`` = 0, ``<unk>`` = 1, then every training token seen at least
``min_count`` times, most frequent first (ties in string order). Other tokens, in any split, become
``<unk>``; with ``min_count >= 2`` the rare training tokens do too, so ``<unk>``'s embedding is trained.

Batches are right-padded: ``tokens [b, t]`` int32 (``<pad>`` after each sentence's end), ``lengths [b]``
int32, ``labels [b]`` int32. Sentences longer than ``max_len`` keep their first ``max_len`` tokens.
``t`` is the batch's longest sentence rounded up to a multiple of ``pad_multiple``, so a jitted step
compiles for at most ``ceil(max_len / pad_multiple)`` shapes.

Training order: ``seqjax.data.batching`` (shuffled per epoch, bucketed by length).

MR (Pang & Lee 2005, ``../shared/data/mr/rt-polarity.{pos,neg}``, ``read_polarity``, ``load_mr``): 5,331
positive and 5,331 negative sentences, one per line, already lower-cased and tokenized, in Latin-1/cp1252
bytes (not UTF-8). A line's tokens are its bytes split on ASCII whitespace, each decoded as Latin-1 (so
every byte is one character: ``\xe9`` is ``é``, and cp1252's ellipsis ``\x85``, Unicode's NEL, stays inside
its token instead of splitting it as ``str.split`` would), then lower-cased. A file that is UTF-8 (its
non-ASCII bytes all decode as UTF-8: a re-encoded copy, whose ``é`` would read as ``Ã©``), holds a control
byte (e.g. the NULs of UTF-16) or an empty line is a ``DataError`` naming the file and the line.

MR has no split; ``fold_indices`` gives the customary k-fold cross-validation: the positive sentences
(label 1) then the negative ones (label 0) are permuted by a generator seeded with ``MR_SHUFFLE_SEED`` (a
constant, independent of the training ``--seed``: every run sees the same folds), the permutation is cut
into ``folds`` near-equal consecutive parts (``np.array_split``), part ``fold`` is the test set, and of the
other parts, in permutation order, the first ``round(MR_DEV_FRACTION * n)`` sentences are dev (for model
selection) and the rest train. Every sentence is in exactly one test fold. The vocabulary comes from the
fold's train part only.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from seqjax.data.text import DataError, Vocab, read_lines, shorten

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
SPLITS = ("train", "dev", "test")
TEXT_COLUMNS = ("sentence", "content")  # the header's second column: train's, dev's and test's
LABELS = ("0", "1")
POLARITY_FILES = (("rt-polarity.pos", 1), ("rt-polarity.neg", 0))  # MR's files and their labels
MR_SHUFFLE_SEED = 20050601  # the fixed permutation behind MR's folds (Pang & Lee's ACL 2005)
MR_DEV_FRACTION = 0.1  # of each fold's training sentences, held out for model selection
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclasses.dataclass(frozen=True)
class Split:
    """One file's examples: ``sentences[i]`` (tokens) has label ``labels[i]`` (``[n]`` int32, 0 or 1)."""

    sentences: tuple[tuple[str, ...], ...]
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.sentences)


@dataclasses.dataclass(frozen=True)
class Encoded:
    """A split as arrays: ``ids [n, L]`` int32 right-padded with ``PAD_ID`` (L the longest length),
    ``lengths [n]`` int32 (each >= 1 and <= ``max_len``) and ``labels [n]`` int32."""

    ids: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class SentimentData:
    """The vocabulary (built from train) and the three encoded splits."""

    vocab: Vocab
    train: Encoded
    dev: Encoded
    test: Encoded


def read_split(path: str | os.PathLike) -> Split:
    """The examples of one ``label<TAB>text`` file (module docstring); ``DataError`` naming file and line."""
    path = Path(path)
    lines = read_lines(path)
    if lines[-1] == "":
        lines.pop()  # the final newline
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]  # CRLF files, as SST-2 is distributed
    header = tuple(lines[0].split("\t"))
    if header not in [("label", column) for column in TEXT_COLUMNS]:
        expected = " or ".join(f"'label<TAB>{column}'" for column in TEXT_COLUMNS)
        hint = " (GLUE's column order? this loader reads label<TAB>text)" if header[-1:] == ("label",) else ""
        raise DataError(f"{path}:1: expected the header {expected}, found {shorten(lines[0])}{hint}")
    sentences, labels = [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(
                f"{path}:{number}: expected 2 tab-separated fields (label, text), found {len(fields)}: {shorten(line)}"
            )
        label, text = fields
        if label not in LABELS:
            raise DataError(f"{path}:{number}: the label must be 0 or 1, found {shorten(label)}")
        tokens = tuple(text.lower().split())
        if not tokens:
            raise DataError(f"{path}:{number}: empty text")
        sentences.append(tokens)
        labels.append(int(label))
    if not sentences:
        raise DataError(f"{path}: a header and no examples")
    return Split(tuple(sentences), np.asarray(labels, np.int32), str(path))


def build_vocab(sentences: Sequence[Sequence[str]], min_count: int = 1) -> Vocab:
    """``<pad>``, ``<unk>``, then the tokens seen ``>= min_count`` times, most frequent first, ties in string order."""
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    counts = Counter(token for sentence in sentences for token in sentence)
    for special in (PAD, UNK):  # a literal "<unk>" in the text is the unknown token
        counts.pop(special, None)
    kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return Vocab((PAD, UNK, *kept))


def check_vocab(vocab: Vocab, source: str = "the vocabulary") -> Vocab:
    """``vocab`` if it starts with ``<pad>``, ``<unk>`` (a saved one read back); else ``DataError``."""
    if vocab.tokens[:2] != (PAD, UNK):
        raise DataError(f"{source}: a sentiment vocabulary starts with {PAD!r}, {UNK!r}, found {vocab.tokens[:2]}")
    return vocab


def encode(split: Split, vocab: Vocab, max_len: int) -> Encoded:
    """Ids of ``split``'s sentences (unknown tokens -> ``UNK_ID``), each cut to its first ``max_len`` tokens."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    check_vocab(vocab)
    index = {token: i for i, token in enumerate(vocab.tokens)}
    lengths = np.asarray([min(len(s), max_len) for s in split.sentences], np.int32)
    ids = np.full((len(split), int(lengths.max())), PAD_ID, np.int32)
    for row, (sentence, length) in enumerate(zip(split.sentences, lengths, strict=True)):
        ids[row, :length] = [index.get(token, UNK_ID) for token in sentence[:length]]
    return Encoded(ids, lengths, split.labels)


def split_paths(directory: str | os.PathLike) -> dict[str, Path]:
    return {split: Path(directory) / f"{split}.tsv" for split in SPLITS}


def load_sst2(directory: str | os.PathLike, min_count: int = 1, max_len: int = 64) -> SentimentData:
    """``{train,dev,test}.tsv`` of ``directory``, checked, with the training split's vocabulary."""
    if not Path(directory).is_dir():
        raise DataError(f"{directory}: no such directory (expected train.tsv, dev.tsv and test.tsv of SST-2)")
    splits = {name: read_split(path) for name, path in split_paths(directory).items()}
    vocab = build_vocab(splits["train"].sentences, min_count)
    return SentimentData(vocab, *(encode(splits[name], vocab, max_len) for name in SPLITS))


def read_polarity(path: str | os.PathLike) -> tuple[tuple[str, ...], ...]:
    """The sentences (tokens) of one MR file, Latin-1 bytes (module docstring); ``DataError`` naming file and line."""
    path = Path(path)
    if not path.is_file():
        problem = "not a regular file" if path.exists() else "no such file"
        raise DataError(f"{path}: {problem} (expected MR's Latin-1 sentences, one per line)")
    data = path.read_bytes()
    if not data.strip():
        raise DataError(f"{path}: empty file, expected one sentence per line")
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the final newline
    if not data.isascii() and _is_utf8(data):
        number = next(i for i, line in enumerate(lines, start=1) if not line.isascii())
        raise DataError(
            f"{path}:{number}: the file is UTF-8 (a re-encoded copy?), expected MR's Latin-1/cp1252 bytes "
            f"(e.g. b'\\xe9' for 'é'): {shorten(lines[number - 1].decode('utf-8'))}"
        )
    sentences = []
    for number, line in enumerate(lines, start=1):
        control = _CONTROL_BYTES.search(line)
        if control:
            raise DataError(
                f"{path}:{number}: control byte {control.group()!r} at byte {control.start() + 1} of the line, "
                "expected Latin-1 text (UTF-16?)"
            )
        tokens = tuple(token.decode("latin-1").lower() for token in line.split())  # bytes.split: ASCII whitespace
        if not tokens:
            raise DataError(f"{path}:{number}: empty line, expected a sentence")
        sentences.append(tokens)
    return tuple(sentences)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_mr(directory: str | os.PathLike) -> Split:
    """Every MR sentence: ``rt-polarity.pos``'s (label 1), then ``rt-polarity.neg``'s (label 0)."""
    if not Path(directory).is_dir():
        names = " and ".join(name for name, _ in POLARITY_FILES)
        raise DataError(f"{directory}: no such directory (expected MR's {names})")
    sentences: list[tuple[str, ...]] = []
    labels: list[int] = []
    for name, label in POLARITY_FILES:
        read = read_polarity(Path(directory) / name)
        sentences += read
        labels += [label] * len(read)
    return Split(tuple(sentences), np.asarray(labels, np.int32), str(directory))


def fold_indices(
    n: int, folds: int, fold: int, seed: int = MR_SHUFFLE_SEED, dev_fraction: float = MR_DEV_FRACTION
) -> dict[str, np.ndarray]:
    """``{"train", "dev", "test"}``: the example indices (int64) of fold ``fold`` of ``folds`` (module docstring).

    Test is part ``fold`` of the permutation of ``range(n)`` seeded by ``seed``, cut in ``folds`` parts; dev is the
    first ``round(dev_fraction * r)`` of the other ``r`` indices (in permutation order) and train the rest.
    """
    if folds < 2 or not 0 <= fold < folds:
        raise ValueError(f"need folds >= 2 and 0 <= fold < folds, got folds={folds}, fold={fold}")
    if not 0 < dev_fraction < 1:
        raise ValueError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
    parts = np.array_split(np.random.default_rng(seed).permutation(n), folds)
    rest = np.concatenate([part for k, part in enumerate(parts) if k != fold])
    num_dev = round(dev_fraction * len(rest))
    if min(len(parts[fold]), num_dev, len(rest) - num_dev) < 1:
        raise DataError(f"{n} examples are too few for {folds} folds with a {dev_fraction:.0%} dev part")
    return {"train": rest[num_dev:], "dev": rest[:num_dev], "test": parts[fold]}


def subset(split: Split, indices: np.ndarray) -> Split:
    """The examples ``indices`` of ``split``, in that order."""
    return Split(tuple(split.sentences[i] for i in indices), split.labels[indices], split.source)


def load_mr(
    directory: str | os.PathLike, folds: int = 10, fold: int = 0, min_count: int = 1, max_len: int = 64
) -> SentimentData:
    """MR's two files, checked, cut into fold ``fold``'s train/dev/test (module docstring), with train's vocabulary."""
    everything = read_mr(directory)
    splits = {name: subset(everything, indices) for name, indices in fold_indices(len(everything), folds, fold).items()}
    vocab = build_vocab(splits["train"].sentences, min_count)
    return SentimentData(vocab, *(encode(splits[name], vocab, max_len) for name in SPLITS))


def padded_length(longest: int, pad_multiple: int) -> int:
    """``longest`` rounded up to a multiple of ``pad_multiple``."""
    return -(-longest // pad_multiple) * pad_multiple


def take(data: Encoded, indices: np.ndarray, pad_multiple: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(tokens [b, t], lengths [b], labels [b])`` of the examples ``indices [b]``, padded to a multiple."""
    lengths = data.lengths[indices]
    width = padded_length(int(lengths.max()), pad_multiple)
    tokens = np.full((len(indices), width), PAD_ID, np.int32)
    stored = min(width, data.ids.shape[1])
    tokens[:, :stored] = data.ids[indices, :stored]
    return tokens, lengths, data.labels[indices]


def eval_batches(data: Encoded, batch_size: int, pad_multiple: int = 1) -> Iterator[tuple[np.ndarray, ...]]:
    """Every example once, in batches of ``batch_size`` sorted by length (little padding).

    Yields ``(indices [b], tokens [b, t], lengths [b], labels [b])``; the last batch is filled up to
    ``batch_size`` with repeats of its first example (one shape per ``t``), and ``indices`` lists only
    its real examples, which come first.
    """
    order = np.argsort(data.lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        filled = np.concatenate([indices, np.full(batch_size - len(indices), indices[0])])
        yield (indices, *take(data, filled, pad_multiple))
