"""Corpus BLEU (Papineni et al. 2002) on pre-tokenized text, with sacrebleu's conventions.

For hypotheses ``h_1..h_S``, each with references ``R_s = {r_s1, r_s2, ...}``, and n = 1..N (``max_order``)::

    matches_n = sum_s sum_{g in ngrams_n(h_s)} min(count(g, h_s), max_{r in R_s} count(g, r))   clipped counts
    totals_n  = sum_s max(|h_s| - n + 1, 0)
    p_n       = 100 matches_n / totals_n                                                        in percent
    c         = sum_s |h_s|,   r = sum_s |r*_s|,   r*_s the reference closest in length to h_s (ties: shorter)
    BP        = 1 if c >= r, exp(1 - r / c) if 0 < c < r, 0 if c = 0
    BLEU      = BP exp((1 / N) sum_n log p_n)                                                   0..100

Zero counts follow sacrebleu (``sacrebleu.metrics.bleu.BLEU.compute_bleu``):

- no n-gram of any order matches: BLEU = 0 and every p_n = 0;
- ``totals_n = 0`` (every hypothesis shorter than n): p_n and all higher orders are 0, so BLEU = 0;
- ``matches_n = 0`` with ``totals_n > 0``: ``smooth="none"`` leaves p_n = 0, so BLEU = 0; ``smooth="exp"``
  (mteval-v13a's smoothing, sacrebleu's default) sets p_n = 100 / (2^k totals_n), k counting the orders so
  far with no match (1 for the first, 2 for the second, ...).

``corpus_bleu`` compares tokens as given (sacrebleu's ``tokenize="none"``); ``sacrebleu_score`` hands
detokenized strings to sacrebleu itself, with its default 13a tokenizer: use it for reported numbers.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

SMOOTHINGS = ("none", "exp")


class BleuScore(NamedTuple):
    """A corpus BLEU score and its parts.

    Attributes:
      score: BLEU, 0..100.
      precisions: p_1..p_N in percent (module docstring), smoothed where ``smooth="exp"`` applies.
      brevity_penalty: BP.
      ratio: c / r (0 when r = 0).
      hyp_len: c, the hypotheses' total length in tokens.
      ref_len: r, the total length of the closest references.
      matches: the clipped n-gram matches, n = 1..N.
      totals: the hypotheses' n-gram counts, n = 1..N.
    """

    score: float
    precisions: tuple[float, ...]
    brevity_penalty: float
    ratio: float
    hyp_len: int
    ref_len: int
    matches: tuple[int, ...]
    totals: tuple[int, ...]


def ngram_counts(tokens: Sequence[str], max_order: int) -> Counter:
    """How often each n-gram (a tuple of n tokens, 1 <= n <= max_order) occurs in ``tokens``."""
    return Counter(tuple(tokens[i : i + n]) for n in range(1, max_order + 1) for i in range(len(tokens) - n + 1))


def closest_length(hyp_len: int, ref_lens: Sequence[int]) -> int:
    """The reference length closest to ``hyp_len``; of two equally close, the shorter."""
    return min(ref_lens, key=lambda ref_len: (abs(ref_len - hyp_len), ref_len))


def _check_tokens(tokens, what: str) -> None:
    if isinstance(tokens, str):
        raise TypeError(f"{what} must be a sequence of tokens, got the string {tokens[:40]!r} (split it first)")


def corpus_bleu(
    hypotheses: Sequence[Sequence[str]],
    references: Sequence[Sequence[Sequence[str]]],
    max_order: int = 4,
    smooth: str = "exp",
) -> BleuScore:
    """Corpus BLEU of tokenized ``hypotheses`` against their references (module docstring).

    Equals ``sacrebleu.corpus_bleu`` with ``tokenize="none"`` on the space-joined tokens (with sacrebleu's
    references transposed: it takes one stream per reference, here each hypothesis has its own list).

    Args:
      hypotheses: S hypotheses, each a sequence of tokens.
      references: S lists of references, ``references[s]`` the one or more references of ``hypotheses[s]``,
        each a sequence of tokens. Hypotheses may have different numbers of references.
      max_order: N.
      smooth: ``"exp"`` (sacrebleu's default) or ``"none"`` (Papineni et al.'s original).

    Returns:
      ``BleuScore``.
    """
    if smooth not in SMOOTHINGS:
        raise ValueError(f"unknown smooth {smooth!r}; known: {', '.join(SMOOTHINGS)}")
    if max_order < 1:
        raise ValueError(f"max_order must be >= 1, got {max_order}")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    matches, totals = [0] * max_order, [0] * max_order
    hyp_len = ref_len = 0
    for s, (hyp, refs) in enumerate(zip(hypotheses, references, strict=True)):
        _check_tokens(hyp, f"hypothesis {s}")
        if isinstance(refs, str) or not refs:
            raise ValueError(f"hypothesis {s} needs a list of one or more tokenized references, got {refs!r:.60}")
        clip = Counter()
        for j, ref in enumerate(refs):
            _check_tokens(ref, f"reference {j} of hypothesis {s}")
            clip |= ngram_counts(ref, max_order)  # max count over the references
        for gram, count in ngram_counts(hyp, max_order).items():
            totals[len(gram) - 1] += count
            matches[len(gram) - 1] += min(count, clip[gram])
        hyp_len += len(hyp)
        ref_len += closest_length(len(hyp), [len(ref) for ref in refs])
    return bleu_from_counts(matches, totals, hyp_len, ref_len, smooth)


def bleu_from_counts(
    matches: Sequence[int], totals: Sequence[int], hyp_len: int, ref_len: int, smooth: str = "exp"
) -> BleuScore:
    """BLEU from its sufficient statistics (corpus sums of clipped matches and n-gram counts, lengths)."""
    if hyp_len >= ref_len:
        brevity_penalty = 1.0
    else:
        brevity_penalty = math.exp(1 - ref_len / hyp_len) if hyp_len > 0 else 0.0
    order = len(matches)
    precisions = [0.0] * order
    if any(matches):
        unmatched = 0
        for n in range(order):
            if totals[n] == 0:
                break  # this and every higher order: no n-grams at all, p_n = 0
            if matches[n]:
                precisions[n] = 100.0 * matches[n] / totals[n]
            elif smooth == "exp":
                unmatched += 1
                precisions[n] = 100.0 / (2**unmatched * totals[n])
    if all(precisions):
        score = brevity_penalty * math.exp(sum(math.log(p) for p in precisions) / order)
    else:
        score = 0.0
    ratio = hyp_len / ref_len if ref_len else 0.0
    return BleuScore(score, tuple(precisions), brevity_penalty, ratio, hyp_len, ref_len, tuple(matches), tuple(totals))


def sacrebleu_score(
    hypotheses: Sequence[str], references: Sequence[Sequence[str] | str], smooth: str = "exp"
) -> BleuScore:
    """``sacrebleu.corpus_bleu`` with its default 13a tokenizer on detokenized strings, as a ``BleuScore``.

    Args:
      hypotheses: S detokenized hypothesis strings.
      references: S entries, ``references[s]`` one reference string or a list of them for ``hypotheses[s]``
        (per hypothesis, like ``corpus_bleu``; transposed here into sacrebleu's reference streams, missing
        references as ``None`` where hypotheses have different numbers of them).
      smooth: ``"exp"`` (sacrebleu's default) or ``"none"``.
    """
    import sacrebleu  # only here: corpus_bleu needs no third-party code

    if smooth not in SMOOTHINGS:
        raise ValueError(f"unknown smooth {smooth!r}; known: {', '.join(SMOOTHINGS)}")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    per_hypothesis = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    if any(not refs for refs in per_hypothesis):
        raise ValueError("every hypothesis needs at least one reference")
    num_streams = max(len(refs) for refs in per_hypothesis)
    streams = [[refs[j] if j < len(refs) else None for refs in per_hypothesis] for j in range(num_streams)]
    result = sacrebleu.corpus_bleu(list(hypotheses), streams, smooth_method=smooth)
    return BleuScore(
        result.score,
        tuple(result.precisions),
        result.bp,
        result.ratio,
        result.sys_len,
        result.ref_len,
        tuple(result.counts),
        tuple(result.totals),
    )
