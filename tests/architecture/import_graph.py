"""The import graph of engine/ and mapping/, read from the source (every import statement,
module-level or inside a function), for the architecture tests."""
from __future__ import annotations

import ast
import collections
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "mapping")
EXTENSIONS = ("engine._kernels",)        # compiled modules: importable, no source


def modules() -> dict:
    """dotted name -> source path (None for compiled extensions)."""
    out = {}
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = p
    out.update({name: None for name in EXTENSIONS})
    return out


def _targets(mod: str, path: Path, node, known: dict) -> list:
    """Dotted names one import statement reaches (submodules where they are modules)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    if node.level:
        base = pkg.split(".")[:len(pkg.split(".")) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module
    # `from pkg import sub` runs pkg/__init__.py first: an edge to the package as well (a
    # namespace package without __init__.py runs nothing)
    subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
    if target in known or len(subs) < len(node.names):
        return [target] + subs
    return subs


def _nodes(known: dict):
    """(module, path, AST node) over every node of every source module."""
    for mod, path in known.items():
        if path is not None:
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                yield mod, path, node


def _dynamic(node) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and
            node.func.attr == "import_module" and node.args and
            isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str) and
            node.args[0].value.split(".")[0] in PACKAGES)


def imports() -> list:
    """(importer, imported, line) for every import of one of our modules by another; an
    import of a name inside a module counts as an import of that module."""
    known = modules()
    out = []
    for mod, path, node in _nodes(known):
        if _dynamic(node):        # importlib.import_module("engine._kernels") counts too
            out.append((mod, node.args[0].value, node.lineno))
            continue
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        for t in _targets(mod, path, node, known):
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != mod:
                out.append((mod, t, node.lineno))
    return out


_PROSE = re.compile(r"(?:^|[\s`>])(?:from\s+((?:engine|mapping)[\w.]*)\s+import\s+(\w+)|"
                    r"import\s+((?:engine|mapping)[\w.]*))")


def text_imports() -> list:
    """(importer, imported, line) for every line of text that reads as an import of ours,
    docstrings and comments included: tools that read source line by line (the stop hook's
    module graph) count those, so prose must not name an import that would close a cycle.
    Every package on an absolute import's path counts, as Python runs each one's __init__."""
    known = modules()
    out = []
    for mod, path in known.items():
        if path is None:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for m in _PROSE.finditer(line):
                names = [m.group(1), f"{m.group(1)}.{m.group(2)}"] if m.group(1) else [m.group(3)]
                for t in names:
                    # an absolute import runs every package on the way (`import engine.zoo`
                    # runs engine/__init__.py first): an edge to each of them
                    while t:
                        if t in known and t != mod:
                            out.append((mod, t, n))
                        t = t.rpartition(".")[0]
    return out


def external_imports() -> list:
    """(importer, top-level package name, line) for imports of anything outside ours."""
    known = modules()
    out = []
    for mod, path, node in _nodes(known):
        if isinstance(node, ast.Import):
            out += [(mod, a.name.split(".")[0], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.append((mod, node.module.split(".")[0], node.lineno))
    return out


def cycles(edges: list) -> list:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    graph = collections.defaultdict(set)
    for a, b, _ in edges:
        graph[a].add(b)
    index, low, stack, on, comps = {}, {}, [], set(), []
    counter = [0]
    for root in list(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    comps.append(sorted(comp))
    return comps


def private_imports() -> list:
    """(importer, module, name, line) for every `from module import _name` of one of our
    modules (not a module itself, not a dunder) in engine/ and mapping/."""
    known = modules()
    out = []
    for mod, path, node in _nodes(known):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = _targets(mod, path, node, known)[0]
        for alias in node.names:
            name = alias.name
            if name.startswith("_") and not name.startswith("__") and \
                    f"{base}.{name}" not in known and base.split(".")[0] in PACKAGES:
                out.append((mod, base, name, node.lineno))
    return out
