"""Sentence classification data: SST-2 as ``label<TAB>text`` files, a vocabulary, padded batches.

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

Training order (``epoch_batches``): epoch e permutes the training examples with a generator seeded by
``(seed, e)`` and drops the last ``n mod b`` of the permutation (every batch is full; other examples
are dropped in other epochs). With ``bucket``, the permutation is cut into pools of ``bucket_pool``
batches, each pool is sorted by length and cut into batches, and the order of all the batches is
shuffled: a batch holds sentences of similar length (on SST-2's phrase-level train split, mean
length 9.4 and maximum 52, this cuts the padded steps several-fold), while which sentences meet in
a batch still changes every epoch. The batches of an epoch are a function of ``(seed, epoch)``
alone, so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from seqjax.data.text import DataError, Vocab, read_text

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
SPLITS = ("train", "dev", "test")
TEXT_COLUMNS = ("sentence", "content")  # the header's second column: train's, dev's and test's
LABELS = ("0", "1")


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


def _shorten(line: str, limit: int = 60) -> str:
    return repr(line if len(line) <= limit else line[:limit] + "...")


def read_split(path: str | os.PathLike) -> Split:
    """The examples of one ``label<TAB>text`` file (module docstring); ``DataError`` naming file and line."""
    path = Path(path)
    lines = read_text(path).split("\n")  # not splitlines(): it also splits on \x85, \u2028, ... inside text
    if lines[-1] == "":
        lines.pop()  # the final newline
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]  # CRLF files, as SST-2 is distributed
    header = tuple(lines[0].split("\t"))
    if header not in [("label", column) for column in TEXT_COLUMNS]:
        expected = " or ".join(f"'label<TAB>{column}'" for column in TEXT_COLUMNS)
        hint = " (GLUE's column order? this loader reads label<TAB>text)" if header[-1:] == ("label",) else ""
        raise DataError(f"{path}:1: expected the header {expected}, found {_shorten(lines[0])}{hint}")
    sentences, labels = [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(
                f"{path}:{number}: expected 2 tab-separated fields (label, text), found {len(fields)}: {_shorten(line)}"
            )
        label, text = fields
        if label not in LABELS:
            raise DataError(f"{path}:{number}: the label must be 0 or 1, found {_shorten(label)}")
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


@functools.lru_cache(maxsize=2)
def _epoch_batches(
    lengths: bytes, batch_size: int, seed: int, epoch: int, bucket: bool, bucket_pool: int
) -> np.ndarray:
    lengths_array = np.frombuffer(lengths, np.int32)
    rng = np.random.default_rng([seed, epoch])
    num_batches = len(lengths_array) // batch_size
    order = rng.permutation(len(lengths_array))[: num_batches * batch_size]
    if bucket:
        pool = bucket_pool * batch_size
        order = np.concatenate(
            [
                chunk[np.argsort(lengths_array[chunk], kind="stable")]
                for chunk in np.split(order, range(pool, len(order), pool))
            ]
        )
        batches = order.reshape(num_batches, batch_size)
        return batches[rng.permutation(num_batches)].astype(np.int32)
    return order.reshape(num_batches, batch_size).astype(np.int32)


def epoch_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, bucket: bool = True, bucket_pool: int = 50
) -> np.ndarray:
    """The example indices of every batch of epoch ``epoch``, ``[n // batch_size, batch_size]`` int32.

    See the module docstring; a function of its arguments alone (cached for the current epoch).
    """
    if batch_size < 1 or bucket_pool < 1:
        raise ValueError(f"batch_size and bucket_pool must be >= 1, got {batch_size} and {bucket_pool}")
    if len(lengths) < batch_size:
        raise DataError(f"{len(lengths)} training examples, fewer than the batch size {batch_size}")
    return _epoch_batches(np.asarray(lengths, np.int32).tobytes(), batch_size, seed, epoch, bucket, bucket_pool)


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
