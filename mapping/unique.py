"""repeated(): the one check that a list names each thing once (a plan's layers, a candidate
space's keys, a problem's layers)."""
from __future__ import annotations

from typing import Iterable


def repeated(values: Iterable) -> list:
    """The values that occur more than once, sorted ([] when each occurs once)."""
    values = list(values)
    return sorted({v for v in values if values.count(v) > 1})
