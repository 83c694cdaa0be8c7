"""absl flag validators shared by the experiment scripts."""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from seqjax.cells import cell_by_name


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
