"""The project's C++ kernels, compiled from source on first use and cached.

A kernel is a ``.cc`` file in this folder, written against XLA's FFI headers (which jaxlib ships). ``library(name)``
compiles ``name.cc`` into a shared library the first time it is asked for, with the C++ compiler named by ``$CXX``
(else the first of c++, g++, clang++ on the PATH) and ``-O3 -march=native``, and loads it. The library is cached
under ``$SEQJAX_NATIVE_CACHE`` (default ``$XDG_CACHE_HOME/seqjax/native``, else ``~/.cache/seqjax/native``) in a
folder named by a hash of the source, the compiler, its flags, jaxlib's version and this machine's CPU, so an edit,
an upgrade or another machine sharing the home folder builds anew. A library is written under a temporary name and
renamed into place, so processes that build it at once do not see a half-written file.

Where it cannot be built (no compiler, a compiler error, an unwritable cache), ``library`` raises
``NativeUnavailable`` with one line saying why, and says the same again on later calls without another attempt (a
caller asks on every trace); callers fall back to their pure-JAX path.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax.ffi
import jaxlib

SOURCES = Path(__file__).parent
FLAGS = ("-O3", "-march=native", "-std=c++20", "-shared", "-fPIC", "-pthread")
COMPILERS = ("c++", "g++", "clang++")


class NativeUnavailable(RuntimeError):
    """A kernel that cannot be compiled or loaded here; the message is one line saying why."""


def compiler() -> str | None:
    """The C++ compiler to use: ``$CXX`` if set (a name on the PATH or a path), else the first one found."""
    if os.environ.get("CXX"):
        return shutil.which(os.environ["CXX"])
    return next((found for name in COMPILERS if (found := shutil.which(name))), None)


def cache_dir() -> Path:
    """Where compiled kernels are kept (see the module docstring)."""
    if os.environ.get("SEQJAX_NATIVE_CACHE"):
        return Path(os.environ["SEQJAX_NATIVE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "seqjax" / "native"


def _cpu() -> str:
    """What identifies this CPU for ``-march=native``: its model and feature flags where Linux lists them."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine() + platform.processor()
    return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags"))}))


def _key(source: Path, cxx: str) -> str:
    digest = hashlib.sha256(source.read_bytes())
    for part in (cxx, *FLAGS, jaxlib.__version__, _cpu()):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def compile_library(name: str, cxx: str, out: Path) -> None:
    """Compiles ``SOURCES/name.cc`` with ``cxx`` into the shared library ``out`` (atomically)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    command = [cxx, *FLAGS, "-I", jax.ffi.include_dir(), str(SOURCES / f"{name}.cc"), "-o", tmp]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            first = next((line for line in result.stderr.splitlines() if "error" in line), result.stderr.strip())
            raise NativeUnavailable(f"{Path(cxx).name} could not compile {name}.cc: {first[:200]}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def library(name: str) -> ctypes.CDLL:
    """The loaded kernel library ``name`` (``SOURCES/name.cc``), compiled first if it is not in the cache. The outcome
    is kept for the process: the library stays loaded, as XLA may call its handlers at any time, and a failure is
    raised again without compiling again."""
    outcome = _outcome(name)
    if isinstance(outcome, NativeUnavailable):
        raise NativeUnavailable(str(outcome))
    return outcome


@functools.cache
def _outcome(name: str) -> ctypes.CDLL | NativeUnavailable:
    try:
        return load_library(name)
    except NativeUnavailable as e:
        return e


def load_library(name: str) -> ctypes.CDLL:
    """``library`` without keeping the outcome: compiles ``name.cc`` unless the cache has it, then loads it."""
    cxx = compiler()
    if cxx is None:
        wanted = f"$CXX={os.environ['CXX']} was not found" if os.environ.get("CXX") else "no C++ compiler found"
        raise NativeUnavailable(f"{wanted} (install g++ or clang++, or set CXX)")
    out = cache_dir() / _key(SOURCES / f"{name}.cc", cxx) / f"{name}.so"
    if not out.exists():
        try:
            compile_library(name, cxx, out)
        except OSError as e:
            raise NativeUnavailable(f"cannot write the kernel cache {out.parent}: {e.strerror or e}") from None
    try:
        return ctypes.CDLL(str(out))
    except OSError as e:
        raise NativeUnavailable(f"cannot load {out}: {e}") from None
