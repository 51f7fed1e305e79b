"""manifest.json's schema, swept: every field of a real manifest replaced by a value of every other
JSON type. A typed field must refuse it with an ArtifactError naming that field's path; a
free-form one (target.llvm, plan, extra, build, runtime) may take it, or be refused naming an
enclosing field. Nothing may raise anything else (the issue: raw AttributeError / TypeError)."""
from __future__ import annotations

import json
import shutil

import pytest

from engine.artifact import read_manifest
from engine.errors import ArtifactError

FREE_FORM = ("target.llvm", "plan", "extra", "build", "runtime")
# field -> the kind it holds when not null
NULLABLE = {"plan": "object", "plan_file": "string", "target.isa": "string",
            "target.cross_compiler": "string", "target.description": "string"}
VALUES = {"null": None, "bool": True, "int": 7, "float": 2.5, "string": "x", "list": [],
          "object": {}, "huge int": 10**60}


def _kind(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    return {float: "float", str: "string", list: "list", dict: "object"}[type(v)]


def _paths(v, path=(), out=None):
    """(path tuple, value) of every field, depth first."""
    out = [] if out is None else out
    if path:
        out.append((path, v))
    if isinstance(v, dict):
        for k, item in v.items():
            _paths(item, path + (k,), out)
    elif isinstance(v, list):
        for i, item in enumerate(v):
            _paths(item, path + (i,), out)
    return out


def _show(path) -> str:
    """The path as the schema's messages spell it: a.b[0]["odd.key"]."""
    s = ""
    for k in path:
        if isinstance(k, int):
            s += f"[{k}]"
        elif k.isidentifier():
            s += f".{k}" if s else k
        else:
            s += f'["{k}"]'
    return s


def _set(m, path, value):
    for k in path[:-1]:
        m = m[k]
    m[path[-1]] = value


def test_every_field_refuses_other_types(tiny_artifact, tmp_path):
    d = tmp_path / "a"
    shutil.copytree(tiny_artifact, d)
    original = json.loads((tiny_artifact / "manifest.json").read_text())
    checked = refused = 0
    problems = []
    for path, value in _paths(original):
        name = _show(path)
        free = any(name == f or name.startswith(f + ".") or name.startswith(f + "[")
                   for f in FREE_FORM)
        for kind, bad in VALUES.items():
            if kind == _kind(value) or (name in NULLABLE and kind in ("null", NULLABLE[name])):
                continue
            m = json.loads(json.dumps(original))
            _set(m, path, bad)
            (d / "manifest.json").write_text(json.dumps(m))
            checked += 1
            try:
                read_manifest(d)
            except ArtifactError as e:
                refused += 1
                msg = str(e)
                named = [_show(path[:i]) for i in range(len(path), 0, -1)]
                if not any(f"'{n}'" in msg for n in named) and path[0] not in ("format",
                                                                               "format_version"):
                    problems.append(f"{name} = {kind}: message names no enclosing field: {msg}")
                continue
            except Exception as e:  # noqa: BLE001  (the point: nothing but ArtifactError)
                problems.append(f"{name} = {kind}: raised {type(e).__name__}: {e}")
                continue
            if not free:
                problems.append(f"{name} = {kind}: accepted by a typed field")
    assert not problems, f"{len(problems)} of {checked} substitutions:\n" + "\n".join(problems[:40])
    assert checked > 300 and refused > 250            # the sweep did sweep


def test_written_manifest_passes_its_own_schema(tiny_artifact):
    """What save_artifact writes is what the schema accepts (no field missing from the table)."""
    m = read_manifest(tiny_artifact)
    assert m["format"] == "engine-artifact" and m["files"]["model.so"]["size"] > 0


@pytest.mark.parametrize("key, bad, named", [
    ("format", 1, "unknown manifest format 1"),
    ("format_version", 1.0, "unknown artifact format version 1.0"),
    ("format_version", True, "unknown artifact format version true"),
])
def test_format_fields_are_exact(tiny_copy, key, bad, named):
    p = tiny_copy / "manifest.json"
    m = json.loads(p.read_text())
    m[key] = bad
    p.write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match=named):
        read_manifest(tiny_copy)
