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


__all__ = ["positive_int", "reject_unknown"]
