"""absl flag validators shared by the experiment scripts."""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from seqjax.cells import cell_by_name


def positive_ints(values: Sequence[str]) -> bool:
    """A non-empty list of integers >= 1 (as absl's list flags give them, strings)."""
    return bool(values) and all(v.strip().isdigit() and int(v) >= 1 for v in values)


def shape(text: str) -> bool:
    """``BxTxH`` with positive integers, e.g. ``32x128x256``."""
    return positive_ints(text.split("x")) and len(text.split("x")) == 3


def known_cells(names: Sequence[str]) -> bool:
    """Every name builds a cell; otherwise a ValidationError listing the known cells."""
    if not names:
        raise flags.ValidationError("--cells must name at least one cell")
    for name in names:
        try:
            cell_by_name(name)
        except ValueError as e:
            raise flags.ValidationError(str(e)) from e
    return True
