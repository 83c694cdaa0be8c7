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
import tempfile
from pathlib import Path

# The experiment and benchmark scripts import their siblings by name, as they do when run as scripts.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "experiments"), str(ROOT / "benchmarks")]

UNOPTIMISED = "--xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), UNOPTIMISED]))

# One compilation cache for the session, shared by the xdist workers and every subprocess a test starts (they
# inherit the environment): a program compiled once (the same model in a run, its resume and its kill test) is
# read back, not compiled again. Results are the same: the cache holds the very executable XLA compiled.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="seqjax-tests-xla-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402  (after XLA_FLAGS: the backend reads them when it starts)
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def key():
    return jax.random.key(0)
