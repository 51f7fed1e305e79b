"""Lowering: a (masked) torch model -> the modules that run each layer (host runtime), with
one backend table (backends.py) shared by lowering and measurement."""
from .backends import build_layer, native_modules
from .blocks import fuse_blocks
from .host import LoweringResult, fold_bn, lower

__all__ = ["LoweringResult", "build_layer", "fold_bn", "fuse_blocks", "lower", "native_modules"]
