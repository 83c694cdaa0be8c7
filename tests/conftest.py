"""Strict harness: rank promotion and implicit dtype promotion raise; every warning is an error.

``experiments/`` and ``benchmarks/`` are on ``sys.path``: tests import an experiment as its script's siblings do
(``import sentiment``).

XLA compiles without LLVM's optimisation passes (``--xla_backend_optimization_level=0``, here and in every
subprocess a test starts): the tests are bound by compile time, not run time (tests/test_fused.py and
tests/test_tagging.py: 71 s -> 54 s on a 2-core CPU). The arithmetic is the same: XLA:CPU does not
reassociate floating-point operations at any level.
"""

import os
import sys
from pathlib import Path

# The experiment and benchmark scripts import their siblings by name, as they do when run as scripts.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "experiments"), str(ROOT / "benchmarks")]

UNOPTIMISED = "--xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), UNOPTIMISED]))

import jax  # noqa: E402  (after XLA_FLAGS: the backend reads them when it starts)
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def key():
    return jax.random.key(0)
