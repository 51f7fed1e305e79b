"""Validation of scheme options: every bad option raises ConfigError naming the option."""
from __future__ import annotations

from typing import Any, Iterable

from ..errors import ConfigError


def positive_int(value: Any, option: str, scheme: str) -> int:
    """`value` as an int >= 1, else ConfigError naming `option`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"scheme {scheme!r}: option {option!r} must be a positive int, "
                          f"got {value!r}")
    return int(value)


def reject_unknown(scheme: str, unknown: dict, known: Iterable[str]) -> None:
    """ConfigError if any option in `unknown` was passed (lists the scheme's known options)."""
    if unknown:
        raise ConfigError(f"scheme {scheme!r}: unknown option(s) {sorted(unknown)}; "
                          f"known options: {sorted(known)}")


def candidate_options(cand) -> dict:
    """get_scheme's keyword options for a mapping Candidate or a plan Choice: its options, its
    block, and for an int8 block `quads` (its columns are column quads: see BlockScheme)."""
    opts = dict(cand.options)
    if cand.block is not None:
        opts["block"] = tuple(cand.block)
    if cand.scheme == "block" and getattr(cand, "bits", 32) == 8:
        opts["quads"] = True
    return opts


__all__ = ["candidate_options", "positive_int", "reject_unknown"]
