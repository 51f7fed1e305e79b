"""Small files, short functions (DESIGN.md "Layout and layering"; tinygrad's habit of a line
budget checked in CI): no Python file of engine/ or mapping/ over 400 lines, no function over
60 lines (its docstring included)."""
from __future__ import annotations

import ast

from import_graph import modules

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def _sources():
    return [(name, path) for name, path in modules().items() if path is not None]


def test_no_file_over_the_budget():
    long = [f"{path} has {n} lines" for _, path in _sources()
            if (n := len(path.read_text().splitlines())) > MAX_FILE_LINES]
    assert not long, f"files over {MAX_FILE_LINES} lines:\n" + "\n".join(long)


def test_no_function_over_the_budget():
    long = []
    for _, path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path}:{node.lineno} {node.name} has {n} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)
