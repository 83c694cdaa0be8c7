"""Perplexity and bits per token from a summed negative log-likelihood: one code path for every model.

With ``nll`` the sum of ``-ln p(w_t | w_<t)`` over ``count`` predicted tokens::

    nats per token = nll / count,   perplexity = exp(nll / count),   bits per token = nll / (count ln 2)
"""

from __future__ import annotations

import math


def nats_per_token(nll: float, count: int) -> float:
    if count < 1:
        raise ValueError(f"no predicted tokens (count={count})")
    return float(nll) / count


def perplexity(nll: float, count: int) -> float:
    """``exp(nll / count)``; ``inf`` where that overflows a float (a diverged model), never an error."""
    nats = nats_per_token(nll, count)
    return math.exp(nats) if nats < 709.0 else math.inf


def bits_per_token(nll: float, count: int) -> float:
    return nats_per_token(nll, count) / math.log(2)


def summary(nll: float, count: int) -> dict[str, float]:
    """``{"nats", "bits", "perplexity", "tokens"}`` of one evaluation."""
    return {
        "nats": nats_per_token(nll, count),
        "bits": bits_per_token(nll, count),
        "perplexity": perplexity(nll, count),
        "tokens": count,
    }
