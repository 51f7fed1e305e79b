"""The engine's layering (DESIGN.md "Layout and layering"): no import cycle in engine/ and
mapping/ (imports inside functions count), every import points down the layer order, and the
two external dependencies that churn have one door each (tvm: engine/codegen/_tvm.py; the C++
kernels' binding: engine/runtime/native.py)."""
from __future__ import annotations

import pytest

from import_graph import (cycles, external_imports, imports, modules, private_imports,
                          text_imports)

# Lowest first. A module may import its own layer or any layer below, never one above.
LAYERS = (
    ("foundation", ("engine._version", "engine.errors", "engine.options", "engine.progress",
                    "engine.targets", "engine._kernels", "mapping")),
    ("model", ("engine.graph", "engine.schemes", "engine.zoo")),
    ("runtime", ("engine.runtime",)),
    ("codegen", ("engine.codegen",)),
    ("lowering", ("engine.lowering",)),
    ("quant", ("engine.quant",)),
    ("measure", ("engine.measure", "engine.accuracy")),
    ("products", ("engine.train", "engine.artifact", "engine.report")),
    ("pipeline", ("engine.pipeline",)),
    ("entry points", ("engine", "engine.api", "engine.cli", "engine.cli_checks",
                      "engine.__main__", "engine.bench")),
)


def layer_of(mod: str) -> int:
    best, rank = "", None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (mod == p or mod.startswith(p + ".")) and len(p) > len(best):
                best, rank = p, i
    if rank is None:
        raise AssertionError(f"module {mod} is in no layer: add it to LAYERS")
    return rank


def test_every_module_has_a_layer():
    for mod in modules():
        layer_of(mod)


def test_no_import_cycles():
    found = cycles(imports())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_import_cycles_read_line_by_line():
    """The same graph as a line-reading tool sees it: an import written in a docstring or a
    comment (`import engine` in prose) counts, so it must not close a cycle either."""
    found = cycles(imports() + text_imports())
    assert not found, "import cycles (prose counted):\n" + "\n".join(" -> ".join(c) for c in found)


def test_imports_point_down_the_layer_order():
    bad = [f"{a} (layer {LAYERS[layer_of(a)][0]}) imports {b} (layer {LAYERS[layer_of(b)][0]}) "
           f"at line {line}" for a, b, line in imports() if layer_of(b) > layer_of(a)]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_mapping_is_pure_python():
    bad = [f"{a} imports {b}" for a, b, _ in imports()
           if a.startswith("mapping") and not b.startswith("mapping")]
    bad += [f"{a} imports {pkg}" for a, pkg, _ in external_imports()
            if a.startswith("mapping") and pkg in ("torch", "tvm", "engine")]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package,door", [("tvm", "engine.codegen._tvm"),
                                          ("tvm_ffi", "engine.codegen._tvm")])
def test_one_module_imports_tvm(package, door):
    users = sorted({a for a, pkg, _ in external_imports() if pkg == package})
    assert users == [door], f"{package} imported by {users}; only {door} may"


def test_one_module_imports_the_kernels_binding():
    users = sorted({a for a, b, _ in imports() if b == "engine._kernels"})
    assert users == ["engine.runtime.native"], f"engine._kernels imported by {users}"


def _package(mod: str) -> str:
    parts = mod.split(".")
    return ".".join(parts[:2]) if parts[0] == "engine" else parts[0]


def test_no_private_name_crosses_a_package():
    """A name with a leading underscore is its package's business: another package that needs
    it needs a public name."""
    bad = [f"{a} imports {name} from {b} (line {line})"
           for a, b, name, line in private_imports() if _package(a) != _package(b)]
    assert not bad, "\n".join(bad)
