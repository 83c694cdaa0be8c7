"""absl flag validators shared by the experiment scripts."""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from seqjax.cells import cell_by_name
from seqjax.models.token_encoder import ENCODERS


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


def register_token_encoder_validators() -> None:
    """The checks of ``--encoder``, ``--cell``, ``--bidirectional``, ``--hidden`` and ``--num_heads`` that the
    scripts with a token encoder (sentiment, tagging) share: a known encoder and cell; no explicit
    ``--bidirectional`` with the Transformer (self-attention reads both ways); heads dividing ``--hidden``."""
    flags.register_validator("encoder", lambda v: v in ENCODERS, f"--encoder must be one of {', '.join(ENCODERS)}")
    flags.register_multi_flags_validator(
        ["encoder", "bidirectional"],
        lambda f: not (f["encoder"] == "transformer" and f["bidirectional"] and flags.FLAGS["bidirectional"].present),
        "--bidirectional does not apply to --encoder=transformer (self-attention reads both ways)",
    )
    flags.register_multi_flags_validator(
        ["encoder", "hidden", "num_heads"],
        lambda f: f["encoder"] != "transformer" or f["hidden"] % f["num_heads"] == 0,
        "--encoder=transformer: --hidden must be divisible by --num_heads",
    )
    flags.register_validator("cell", lambda name: known_cells([name]))
