"""Every scheme, by name: importing this module imports each scheme module, which registers
its class in base.SCHEMES (a new scheme is a new module plus one line here)."""
from __future__ import annotations

from ..errors import ConfigError
from . import block, channel, nm, pattern, unstructured  # noqa: F401  (each registers itself)
from .base import SCHEMES


def get_scheme(name: str, **options):
    """Instantiate a registered scheme by name; unknown names list the known ones."""
    if name not in SCHEMES:
        raise ConfigError(f"unknown scheme {name!r}; known schemes: {sorted(SCHEMES)}")
    return SCHEMES[name](**options)


def load_all() -> None:
    """Every scheme is registered once this module is imported; kept for callers that ask."""
