"""Translation data: sentence pairs, tokenization, vocabularies, splits and padded batches.

Two datasets (``shared/data/README.md`` section 8):

- ``spa_eng``: ``spa.txt`` of the Tatoeba / manythings.org Anki pairs, UTF-8, one pair a line,
  ``English<TAB>Spanish`` (further tab-separated fields, as newer Anki files have an attribution column, are
  ignored). The default direction is Spanish -> English (``"Vamos!"`` -> ``"Let's go!"``). The file has no
  split: ``split_pairs`` draws one (below).
- ``multi30k``: Multi30k task 1, ``{train,val,test_2016_flickr}.{en,de}``, line-aligned raw captions;
  the default direction is English -> German. A split whose two files differ in line count is a ``DataError``.

Tokenization (``tokenize``): Unicode NFC, lower-cased, then the matches of ``TOKEN_PATTERN``: runs of letters
and digits (``\\w+``), with apostrophes (ASCII or typographic) inside a word kept (``let's``, ``don't``, ``l'homme``);
every other non-space character a token of its own (``¿``, ``!``, ``,``). Accents are
kept (``está``). ``detokenize`` joins tokens with spaces and removes the space before closing punctuation and
after opening punctuation; BLEU is computed by sacrebleu on that string against the reference line itself
(NFC, lower-cased, otherwise untouched), so the model's tokenization never decides what counts as a match.

Splits of ``spa_eng`` (``split_pairs``): the pairs whose two sides have at most ``max_len`` tokens (0: all),
then the first ``max_pairs`` of them in file order (0: all; the TensorFlow tutorial takes the first 30k
pairs), then a split BY SOURCE SENTENCE: the distinct source sentences are permuted by a generator seeded
with ``seed``; the first ``dev_fraction`` of them (rounded down, at least 1) go to dev, the next
``test_fraction`` to test, the rest to train, each with all its pairs (its several translations). No source
sentence is in two splits. Multi30k keeps its own splits; ``max_len`` and ``max_pairs`` apply to its training
pairs only (the dev and test sets are whole).

Vocabulary per side (``build_vocab``): ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3, then every
training token seen at least ``min_count`` times, most frequent first, ties in string order.

Batches (``take``): ``src [b, s]`` int32 right-padded with ``<pad>``, ``src_lengths [b]``, ``tgt_in [b, t]`` =
``<bos> y_1 .. y_n``, ``tgt_out [b, t]`` = ``y_1 .. y_n <eos>``, ``tgt_lengths [b]`` = n + 1; s and t rounded up to
a multiple of ``pad_multiple``. The batches of an epoch come from ``seqjax.data.batching.epoch_batches``
(bucketed by the longer side), a function of ``(seed, epoch)`` alone, so batch k is a function of
``(seed, k)``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from seqjax.data.sentiment import padded_length
from seqjax.data.text import DataError, Vocab, read_lines

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIALS = (PAD, BOS, EOS, UNK)
TOKEN_PATTERN = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")  # \u2019: the typographic apostrophe
DATASETS = ("spa_eng", "multi30k")
# the default and the other direction of each dataset, as "source-target"
DIRECTIONS = {"spa_eng": ("spa-eng", "eng-spa"), "multi30k": ("en-de", "de-en")}
MULTI30K_SPLITS = {"train": "train", "dev": "val", "test": "test_2016_flickr"}
SPLITS = ("train", "dev", "test")
_CLOSING = re.compile(r" ([.,!?;:%)\]}»])")
_OPENING = re.compile(r"([¿¡(\[{«]) ")


def normalize(text: str) -> str:
    """NFC and lower case: the form both tokens and BLEU references are taken from."""
    return unicodedata.normalize("NFC", text).lower()


def tokenize(text: str) -> tuple[str, ...]:
    """The tokens of ``text`` (module docstring): ``"¿Está bien?"`` -> ``("¿", "está", "bien", "?")``."""
    return tuple(TOKEN_PATTERN.findall(normalize(text)))


def detokenize(tokens: Sequence[str]) -> str:
    """Tokens as text: spaces between them, none before closing or after opening punctuation."""
    return _OPENING.sub(r"\1", _CLOSING.sub(r"\1", " ".join(tokens)))


@dataclasses.dataclass(frozen=True)
class Pairs:
    """Sentence pairs: ``source[i]`` translates to ``target[i]`` (token tuples); ``reference[i]`` is the target
    line normalised (NFC, lower case) but not tokenized, the BLEU reference."""

    source: tuple[tuple[str, ...], ...]
    target: tuple[tuple[str, ...], ...]
    reference: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.source)

    def select(self, indices: Sequence[int]) -> Pairs:
        return Pairs(*(tuple(column[i] for i in indices) for column in (self.source, self.target, self.reference)))


def _pairs(sources: Sequence[str], targets: Sequence[str]) -> Pairs:
    return Pairs(
        tuple(tokenize(s) for s in sources), tuple(tokenize(t) for t in targets), tuple(normalize(t) for t in targets)
    )


def _lines(path: Path) -> list[str]:
    lines = read_lines(path)
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _check_direction(dataset: str, direction: str) -> str:
    known = DIRECTIONS[dataset]
    direction = direction or known[0]
    if direction not in known:
        raise ValueError(f"unknown direction {direction!r} for {dataset}; known: {', '.join(known)}")
    return direction


def read_spa_eng(path: str | os.PathLike, direction: str = "spa-eng") -> Pairs:
    """All pairs of ``spa.txt`` in file order; ``DataError`` naming the file and line of a malformed one."""
    path = Path(path)
    direction = _check_direction("spa_eng", direction)
    english, spanish = [], []
    for number, line in enumerate(_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{path}:{number}: expected 'English<TAB>Spanish', found no tab: {line[:60]!r}")
        if not tokenize(fields[0]) or not tokenize(fields[1]):
            raise DataError(f"{path}:{number}: an empty sentence: {line[:60]!r}")
        english.append(fields[0])
        spanish.append(fields[1])
    return _pairs(spanish, english) if direction == "spa-eng" else _pairs(english, spanish)


def read_parallel(source_path: str | os.PathLike, target_path: str | os.PathLike) -> Pairs:
    """Line-aligned files (Multi30k); ``DataError`` if their line counts differ or a line has no token."""
    sources, targets = _lines(Path(source_path)), _lines(Path(target_path))
    if len(sources) != len(targets):
        raise DataError(
            f"{source_path}: {len(sources)} lines, but {target_path} has {len(targets)}; expected line-aligned files"
        )
    for path, lines in ((source_path, sources), (target_path, targets)):
        for number, line in enumerate(lines, start=1):
            if not tokenize(line):
                raise DataError(f"{path}:{number}: an empty sentence")
    return _pairs(sources, targets)


def filter_pairs(pairs: Pairs, max_len: int = 0, max_pairs: int = 0) -> Pairs:
    """The pairs with both sides at most ``max_len`` tokens (0: any), then the first ``max_pairs`` (0: all)."""
    kept = [i for i in range(len(pairs)) if not max_len or max(len(pairs.source[i]), len(pairs.target[i])) <= max_len]
    return pairs.select(kept[:max_pairs] if max_pairs else kept)


def split_pairs(pairs: Pairs, seed: int, dev_fraction: float = 0.1, test_fraction: float = 0.1) -> dict[str, Pairs]:
    """``{"train", "dev", "test"}``, split by distinct source sentence (module docstring)."""
    if not (0 < dev_fraction and 0 < test_fraction and dev_fraction + test_fraction < 1):
        raise ValueError(f"need 0 < dev_fraction, test_fraction and a sum < 1, got {dev_fraction}, {test_fraction}")
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, source in enumerate(pairs.source):
        groups.setdefault(source, []).append(i)
    sources = list(groups)  # first-seen order: a function of the file alone
    if len(sources) < 3:
        raise DataError(f"{len(sources)} distinct source sentences: too few to split into train, dev and test")
    order = np.random.default_rng(seed).permutation(len(sources))
    num_dev = max(1, int(dev_fraction * len(sources)))
    num_test = max(1, int(test_fraction * len(sources)))
    parts = {"dev": order[:num_dev], "test": order[num_dev : num_dev + num_test], "train": order[num_dev + num_test :]}
    return {
        name: pairs.select(sorted(i for s in parts[name] for i in groups[sources[s]])) for name in SPLITS
    }  # each split in file order


def load_pairs(
    dataset: str,
    directory: str | os.PathLike,
    direction: str = "",
    max_len: int = 0,
    max_pairs: int = 0,
    seed: int = 0,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> dict[str, Pairs]:
    """The train, dev and test pairs of ``dataset`` read from ``directory`` (module docstring)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    direction = _check_direction(dataset, direction)
    if not Path(directory).is_dir():
        raise DataError(f"{directory}: no such directory")
    if dataset == "spa_eng":
        pairs = filter_pairs(read_spa_eng(Path(directory) / "spa.txt", direction), max_len, max_pairs)
        return split_pairs(pairs, seed, dev_fraction, test_fraction)
    source, target = direction.split("-")
    splits = {
        name: read_parallel(Path(directory) / f"{stem}.{source}", Path(directory) / f"{stem}.{target}")
        for name, stem in MULTI30K_SPLITS.items()
    }
    splits["train"] = filter_pairs(splits["train"], max_len, max_pairs)
    return splits


def build_vocab(sentences: Sequence[Sequence[str]], min_count: int = 1) -> Vocab:
    """``<pad>, <bos>, <eos>, <unk>``, then the tokens seen ``>= min_count`` times, most frequent first."""
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    counts = Counter(token for sentence in sentences for token in sentence)
    for special in SPECIALS:
        counts.pop(special, None)
    return Vocab((*SPECIALS, *sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))))


@dataclasses.dataclass(frozen=True)
class Encoded:
    """A split as arrays: ``src [n, S]``, ``tgt [n, T]`` int32 right-padded (no ``<bos>``/``<eos>``), their
    lengths ``src_lengths [n]``, ``tgt_lengths [n]`` (tokens, >= 1), and the pairs themselves."""

    src: np.ndarray
    src_lengths: np.ndarray
    tgt: np.ndarray
    tgt_lengths: np.ndarray
    pairs: Pairs

    def __len__(self) -> int:
        return len(self.src_lengths)


def _ids(sentences: Sequence[Sequence[str]], vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    index = vocab.index
    lengths = np.asarray([len(s) for s in sentences], np.int32)
    ids = np.full((len(sentences), int(lengths.max())), PAD_ID, np.int32)
    for row, sentence in enumerate(sentences):
        ids[row, : len(sentence)] = [index.get(token, UNK_ID) for token in sentence]
    return ids, lengths


def encode(pairs: Pairs, src_vocab: Vocab, tgt_vocab: Vocab) -> Encoded:
    """Ids of every pair, unknown tokens ``<unk>``."""
    if len(pairs) == 0:
        raise DataError("no sentence pairs to encode")
    src, src_lengths = _ids(pairs.source, src_vocab)
    tgt, tgt_lengths = _ids(pairs.target, tgt_vocab)
    return Encoded(src, src_lengths, tgt, tgt_lengths, pairs)


@dataclasses.dataclass(frozen=True)
class TranslationData:
    """The vocabularies (from train) and the encoded splits."""

    src_vocab: Vocab
    tgt_vocab: Vocab
    train: Encoded
    dev: Encoded
    test: Encoded


def prepare(splits: dict[str, Pairs], min_count: int = 1) -> TranslationData:
    """Vocabularies of the training pairs and every split encoded with them."""
    train = splits["train"]
    src_vocab, tgt_vocab = build_vocab(train.source, min_count), build_vocab(train.target, min_count)
    return TranslationData(src_vocab, tgt_vocab, *(encode(splits[name], src_vocab, tgt_vocab) for name in SPLITS))


def take(data: Encoded, indices: np.ndarray, pad_multiple: int = 1) -> tuple[np.ndarray, ...]:
    """``(src [b, s], src_lengths [b], tgt_in [b, t], tgt_out [b, t], tgt_lengths [b])`` of ``indices [b]``."""
    src_lengths = data.src_lengths[indices]
    tgt_lengths = data.tgt_lengths[indices] + 1  # the <eos> (or, in tgt_in, the <bos>)
    s = padded_length(int(src_lengths.max()), pad_multiple)
    t = padded_length(int(tgt_lengths.max()), pad_multiple)
    src = np.full((len(indices), s), PAD_ID, np.int32)
    stored = min(s, data.src.shape[1])
    src[:, :stored] = data.src[indices, :stored]
    tgt_in = np.full((len(indices), t), PAD_ID, np.int32)
    tgt_out = np.full((len(indices), t), PAD_ID, np.int32)
    tgt_in[:, 0] = BOS_ID
    for row, (i, n) in enumerate(zip(indices, tgt_lengths - 1, strict=True)):
        tgt_in[row, 1 : n + 1] = data.tgt[i, :n]
        tgt_out[row, :n] = data.tgt[i, :n]
        tgt_out[row, n] = EOS_ID
    return src, src_lengths, tgt_in, tgt_out, tgt_lengths


def batch_lengths(data: Encoded) -> np.ndarray:
    """``[n]``: the longer side of each pair (with its ``<eos>``), what training batches are bucketed by."""
    return np.maximum(data.src_lengths, data.tgt_lengths + 1).astype(np.int32)


def eval_batches(
    data: Encoded, batch_size: int, pad_multiple: int = 1, subset: np.ndarray | None = None
) -> Iterator[tuple]:
    """The pairs ``subset`` (default: all) once each, in batches of ``batch_size`` sorted by source length.

    Yields ``(indices [b'], *take(...))``; the last batch is filled up to ``batch_size`` with repeats of its
    first pair (one compiled shape per padded length), and ``indices`` lists only its real pairs, first.
    """
    subset = np.arange(len(data)) if subset is None else np.asarray(subset)
    order = subset[np.argsort(data.src_lengths[subset], kind="stable")]
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        filled = np.concatenate([indices, np.full(batch_size - len(indices), indices[0])])
        yield (indices, *take(data, filled, pad_multiple))
