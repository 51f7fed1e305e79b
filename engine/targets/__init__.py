"""Targets as data: name -> LLVM target dict, cross compiler, runner (see registry.py)."""
from .registry import TARGETS, Target, get_target

__all__ = ["TARGETS", "Target", "get_target"]
