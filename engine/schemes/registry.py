"""Every scheme, by name: importing this module imports each scheme module, which registers
its class in base.SCHEMES (a new scheme is a new module plus one line here)."""
from __future__ import annotations

from ..errors import ConfigError
# importing each scheme module registers its classes (block, filter / channel, N:M, pattern,
# regular-graph, Structure-LTH regroup / refill, unstructured)
from .block import BlockScheme  # noqa: F401
from .channel import ChannelScheme  # noqa: F401
from .nm import NMScheme  # noqa: F401
from .pattern import PatternScheme  # noqa: F401
from .rgp import RGPScheme  # noqa: F401
from .regroup import RegroupScheme  # noqa: F401
from .unstructured import UnstructuredScheme  # noqa: F401
from .base import SCHEMES


def get_scheme(name: str, **options):
    """Instantiate a registered scheme by name; unknown names list the known ones."""
    if name not in SCHEMES:
        raise ConfigError(f"unknown scheme {name!r}; known schemes: {sorted(SCHEMES)}")
    return SCHEMES[name](**options)


def load_all() -> None:
    """Every scheme is registered once this module is imported; kept for callers that ask."""
