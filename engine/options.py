"""Checks of the options a user passes (optimize(), the CLI, the trainer): one ConfigError per bad
value, naming the option, what it must be and what it got.

Python's own conversions are too lenient for options: float("nan") passes `x > 0` checks the wrong
way (every comparison is False), `int(4.7)` truncates silently, True is an int, and "no" is a
truthy flag. These helpers refuse all of that, so a mistyped option fails at the call, not as a
TypeError deep inside (or worse, as a silently different run).
"""
from __future__ import annotations

import math
import numbers
import os
from typing import Iterable, Optional

from .errors import ConfigError


def _fail(name: str, what: str, value) -> ConfigError:
    return ConfigError(f"option {name!r} must be {what}, got {value!r}")


def _interval(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi:g}"
    return ""


def _expect(name: str, value, kind: type, noun: str, rng: str, none_ok: bool) -> str:
    """What option `name` must be, in words; raises when `value` is not a `kind` (a bool never
    is one: True is an int to Python, not to an option)."""
    what = noun + (f" {rng}" if rng else "") + (" or None" if none_ok else "")
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _fail(name, what, value)
    return what


def number(name: str, value, *, lo: Optional[float] = None, hi: Optional[float] = None,
           lo_open: bool = False, hi_open: bool = False, none_ok: bool = False
           ) -> Optional[float]:
    """A finite real number within the bounds (bools, strings, NaN and infinities refused)."""
    if value is None and none_ok:
        return None
    what = _expect(name, value, numbers.Real, "a finite number",
                   _interval(lo, hi, lo_open, hi_open), none_ok)
    v = float(value)
    if not math.isfinite(v):
        raise _fail(name, what, value)
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise _fail(name, what, value)
    if hi is not None and (v >= hi if hi_open else v > hi):
        raise _fail(name, what, value)
    return v


def integer(name: str, value, *, lo: Optional[int] = None, hi: Optional[int] = None,
            none_ok: bool = False) -> Optional[int]:
    """An int within [lo, hi] (bools and non-integral numbers refused: 4.7 is not silently 4)."""
    if value is None and none_ok:
        return None
    what = _expect(name, value, numbers.Integral, "an int", _interval(lo, hi, False, False),
                   none_ok)
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise _fail(name, what, value)
    return v


def flag(name: str, value) -> bool:
    """True or False, nothing else ("no" is a truthy string, 0 a typo for False or not)."""
    if not isinstance(value, bool):
        raise _fail(name, "True or False", value)
    return value


def text(name: str, value, choices: Optional[Iterable[str]] = None) -> str:
    """A string (one of `choices` when given)."""
    known = sorted(choices) if choices is not None else None
    if not isinstance(value, str) or (known is not None and value not in known):
        raise _fail(name, f"one of {known}" if known is not None else "a string", value)
    return value


def names(name: str, value) -> tuple:
    """A string or an iterable of strings, as a tuple."""
    if isinstance(value, str):
        return (value,)
    try:
        items = tuple(value)
    except TypeError:
        raise _fail(name, "a string or a list of strings", value) from None
    bad = [v for v in items if not isinstance(v, str)]
    if bad:
        raise _fail(name, "a string or a list of strings", value)
    return items


def plan(value):
    """plan=: a mapping.Plan, the path of a saved plan (Plan.save), or None."""
    from mapping import Plan
    if value is None or isinstance(value, Plan):
        return value
    if isinstance(value, (str, os.PathLike)):
        try:
            return Plan.load(value)
        except OSError as e:
            raise ConfigError(f"option 'plan': cannot read {os.fspath(value)!r}: "
                              f"{e.strerror or e}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"option 'plan': {os.fspath(value)!r} is not a saved plan "
                              f"({type(e).__name__}: {e})") from None
    raise ConfigError(f"option 'plan' must be a mapping.Plan, the path of a saved plan, or "
                      f"None, got {type(value).__name__}")


def mapping_options(latency_budget, min_proxy, search_time, seed, progress) -> None:
    """The mapper options, checked before any work (their users run minutes later)."""
    number("latency_budget", latency_budget, lo=0.0, lo_open=True, none_ok=True)
    number("search_time", search_time, lo=0.0, lo_open=True)
    integer("seed", seed)
    flag("progress", progress)
    if not (min_proxy is None or min_proxy == "reference"):
        if isinstance(min_proxy, str):
            raise ConfigError(f"option 'min_proxy' must be 'reference', a finite number or "
                              f"None, got {min_proxy!r}")
        number("min_proxy", min_proxy)
