"""manifest.json and manifest.sig checked against an explicit schema before anything uses them.

parse_manifest(data, path) runs, in order, each step refusing with an ArtifactError that names
the file and (from step 3 on) the field:
  1. (the caller) the file is a regular file within its size limit (layout.MAX_MANIFEST_BYTES);
  2. strict JSON: UTF-8, no duplicate keys, nesting at most MAX_JSON_DEPTH (deeper input is
     refused, never a RecursionError); numbers are kept as written, so a 5000-digit or NaN
     "size" is reported against its field, not as a parser crash;
  3. format and format_version first (a newer format may have another schema), then every field
     from the table MANIFEST_SCHEMA: type, range, pattern, required or optional, no unknown keys
     (free-form parts: target.llvm, plan, extra, build, runtime);
  4. rules across fields: the module and the plan file are listed in files, names are unique,
     tensors are not absurdly large, the plan is one this engine reads.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from ..errors import ArtifactError
from .layout import (DTYPES, FORMAT, FORMAT_VERSION, MANIFEST, MAX_DIM, MAX_ELEMENTS, MAX_FILES,
                     MAX_FILE_BYTES, MAX_JSON_DEPTH, MAX_RANK, SIGNATURE)

SIG_FORMAT = "engine-artifact-signature"


class _Bad(Exception):
    """A field that breaks the schema: its path and what is wrong."""

    def __init__(self, path: str, problem: str):
        super().__init__(path, problem)
        self.path, self.problem = path, problem


class _BigNumber:
    """An integer literal too long to be any field's value, kept as text for the message."""

    def __init__(self, text: str):
        self.text = text


def _show(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, _BigNumber):
        return f"a {len(v.text.lstrip('-'))}-digit number"
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else ("Infinity" if math.isinf(v) else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        r = repr(v)
        return r if len(r) <= 60 else r[:56] + "...'"
    if isinstance(v, dict):
        return "an object"
    return f"a list of {len(v)} items"


def _child(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{path}.{key}" if path else key
    return f'{path}["{key}"]' if len(key) <= 60 else f'{path}["{key[:57]}..."]'


# ---- schema nodes: each checks one value and raises _Bad(path, problem) ----------------------

class _Sized:
    """A value of one type with a bounded length (a string, a list)."""
    kind, unit = object, ""

    def _check_size(self, v, path):
        if not isinstance(v, self.kind):
            raise _Bad(path, f"must be {self.what}, got {_show(v)}")
        if not self.min_len <= len(v) <= self.max_len:
            raise _Bad(path, f"must be {self.what} of {self.min_len} to {self.max_len} "
                             f"{self.unit}, got {len(v)}")


class Str(_Sized):
    kind, unit = str, "characters"

    def __init__(self, max_len=256, pattern=None, what="a string", min_len=1):
        self.max_len, self.min_len, self.what = max_len, min_len, what
        self.pattern = re.compile(pattern) if pattern else None

    def check(self, v, path):
        self._check_size(v, path)
        if self.pattern is not None and not self.pattern.fullmatch(v):
            raise _Bad(path, f"must be {self.what}, got {_show(v)}")


class Int:
    def __init__(self, lo, hi, what):
        self.lo, self.hi, self.what = lo, hi, what

    def check(self, v, path):
        if type(v) is not int:        # bool is an int subclass; 1.0 is not an int here
            raise _Bad(path, f"must be {self.what}, got {_show(v)}")
        if not self.lo <= v <= self.hi:
            raise _Bad(path, f"must be {self.what} (at most {self.hi}), got {_show(v)}"
                       if v > self.hi else f"must be {self.what}, got {_show(v)}")


class Enum:
    def __init__(self, values):
        self.values = tuple(values)

    def check(self, v, path):
        if not isinstance(v, str) or v not in self.values:
            raise _Bad(path, f"must be one of {list(self.values)}, got {_show(v)}")


class Nullable:
    def __init__(self, node):
        self.node = node

    def check(self, v, path):
        if v is not None:
            self.node.check(v, path)


class ListOf(_Sized):
    kind, unit = list, "items"

    def __init__(self, item, max_len, min_len=0, what="a list"):
        self.item, self.max_len, self.min_len, self.what = item, max_len, min_len, what

    def check(self, v, path):
        self._check_size(v, path)
        for i, item in enumerate(v):
            self.item.check(item, _child(path, i))


class MapOf:
    def __init__(self, key, value, max_len, what):
        self.key, self.value, self.max_len, self.what = key, value, max_len, what

    def check(self, v, path):
        if not isinstance(v, dict):
            raise _Bad(path, f"must be {self.what}, got {_show(v)}")
        if len(v) > self.max_len:
            raise _Bad(path, f"must have at most {self.max_len} entries, got {len(v)}")
        for k, item in v.items():
            try:
                self.key.check(k, "")
            except _Bad as e:
                raise _Bad(_child(path, k), f"is not a file inside the artifact: its name "
                                            f"{e.problem}") from None
            self.value.check(item, _child(path, k))


class Obj:
    """An object with known fields: {name: (node, required)}; `open` ones take any key."""

    def __init__(self, fields):
        self.fields = fields

    def check(self, v, path):
        if not isinstance(v, dict):
            raise _Bad(path, f"must be an object, got {_show(v)}")
        for name, (node, required) in self.fields.items():
            if name in v:
                node.check(v[name], _child(path, name))
            elif required:
                raise _Bad(_child(path, name), "is required but missing")
        unknown = sorted(set(v) - set(self.fields))
        if unknown:
            raise _Bad(_child(path, unknown[0]), f"is not a field of a format {FORMAT_VERSION} "
                                                 f"manifest (unknown field)")


class AnyJson:
    """Free-form JSON (plan, extra, ...): any value, but numbers finite and of sane length."""

    def __init__(self, object_only=False):
        self.object_only = object_only

    def check(self, v, path):
        if self.object_only and not isinstance(v, dict):
            raise _Bad(path, f"must be an object, got {_show(v)}")
        if isinstance(v, _BigNumber) or (isinstance(v, float) and not math.isfinite(v)):
            raise _Bad(path, f"must be a finite number of sane size, got {_show(v)}")
        if isinstance(v, dict):
            for k, item in v.items():
                AnyJson().check(item, _child(path, k))
        elif isinstance(v, list):
            for i, item in enumerate(v):
                AnyJson().check(item, _child(path, i))


def req(node):
    return node, True


def opt(node):
    return node, False


# ---- the schema (format version 1) -----------------------------------------------------------

_PART = r"(?!\.\.?(?:/|$))[A-Za-z0-9._+-]{1,128}"
FILE_NAME = Str(128, _PART, "a plain file name (letters, digits, '.', '_', '+', '-'; no '/', "
                            "not '.' or '..')")
REL_PATH = Str(1024, rf"{_PART}(?:/{_PART}){{0,7}}",
               "a relative path (no leading '/', no '..', no empty part)")
VERSION = Str(64, r"[A-Za-z0-9._+-]+", "a version string")
DIM = Int(0, MAX_DIM, "a non-negative int")
SPEC = Obj({
    "name": req(Str(256, r"[^\x00-\x1f]+", "a name without control characters")),
    "shape": req(ListOf(DIM, MAX_RANK, what="a list of dims")),
    "dtype": req(Enum(DTYPES)),
})
FILE_ENTRY = Obj({
    "sha256": req(Str(64, r"[0-9a-f]{64}", "64 lowercase hex digits", min_len=64)),
    "size": req(Int(0, MAX_FILE_BYTES, "a non-negative int")),
})
TARGET = Obj({
    "name": req(Str(128, r"[^\x00-\x1f]+", "a target name")),
    "arch": req(Str(32, r"[A-Za-z0-9_]+", "an arch name such as 'x86_64' or 'aarch64'")),
    "llvm": req(AnyJson(object_only=True)),
    "os": opt(Enum(("linux", "android"))),
    "isa": opt(Nullable(Str(64, r"[A-Za-z0-9_.+-]+", "an ISA name"))),
    "cross_compiler": opt(Nullable(Str(4096, r"[^\x00-\x1f]+", "a compiler name"))),
    "required_cpu_flags": opt(ListOf(Str(64, r"[A-Za-z0-9_.]+", "a CPU flag"), 256,
                                     what="a list of CPU flags")),
    "description": opt(Nullable(Str(4096, what="a string", min_len=0))),
})
MANIFEST_SCHEMA = Obj({
    "format": req(Enum((FORMAT,))),
    "format_version": req(Int(FORMAT_VERSION, FORMAT_VERSION, f"{FORMAT_VERSION}")),
    "engine_version": opt(VERSION),
    "tvm_version": opt(VERSION),
    "tvm_ffi_version": opt(VERSION),
    "created_at": opt(Str(64, r"[0-9T:.+\-Z ]+", "an ISO-8601 time")),
    "target": req(TARGET),
    "module": req(FILE_NAME),
    "entry": opt(Str(128, r"[A-Za-z_][A-Za-z0-9_.]*", "a function name")),
    "runtime": opt(AnyJson(object_only=True)),
    "inputs": req(ListOf(SPEC, 256, min_len=1, what="a list of tensor specs")),
    "outputs": req(ListOf(SPEC, 256, min_len=1, what="a list of tensor specs")),
    "structure": opt(Nullable(AnyJson(object_only=True))),
    "plan": opt(Nullable(AnyJson(object_only=True))),
    "plan_file": opt(Nullable(FILE_NAME)),
    "build": opt(AnyJson(object_only=True)),
    "extra": opt(AnyJson(object_only=True)),
    "files": req(MapOf(REL_PATH, FILE_ENTRY, MAX_FILES,
                       "an object mapping file names to {sha256, size}")),
})
SIGNATURE_SCHEMA = Obj({
    "format": req(Enum((SIG_FORMAT,))),
    "version": req(Int(1, 1, "1")),
    "algorithm": req(Enum(("ed25519",))),
    "key_id": req(Str(16, r"[0-9a-f]{16}", "16 lowercase hex digits (the key id)", min_len=16)),
    "signed_file": req(Enum((MANIFEST,))),
    "signature": req(Str(128, r"[0-9a-f]{128}", "128 lowercase hex digits", min_len=128)),
})


# ---- parsing ---------------------------------------------------------------------------------

def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ArtifactError(f"key {k!r} appears twice in one object")
        out[k] = v
    return out


def _int(text: str):
    return int(text) if len(text) <= 40 else _BigNumber(text)


def _depth(v) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(v, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, d)
            if d <= MAX_JSON_DEPTH:
                stack.extend((c, d + 1) for c in (node.values() if isinstance(node, dict) else node))
    return deepest


def parse_json(data: bytes, path: Path) -> Any:
    """Strict JSON of an artifact file; ArtifactError naming `path` for anything else."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ArtifactError(f"{path} is not UTF-8 text (bad byte at offset {e.start}): the file "
                            f"is damaged") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_int=_int,
                           parse_constant=float)
    except RecursionError:
        raise ArtifactError(f"{path}: JSON nested deeper than {MAX_JSON_DEPTH} levels; refused"
                            ) from None
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}: the file is damaged or was edited") from None
    except (ValueError, TypeError) as e:
        raise ArtifactError(f"{path} is not valid JSON ({e}): the file is damaged") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise ArtifactError(f"{path}: JSON nested deeper than {MAX_JSON_DEPTH} levels; refused")
    return value


def check(value: Any, schema: Obj, path: Path) -> None:
    """value against schema; ArtifactError "<path>: field 'a.b[0]' must be ..." otherwise."""
    try:
        schema.check(value, "")
    except _Bad as e:
        raise ArtifactError(f"{path}: field '{e.path}' {e.problem}") from None


def parse_manifest(data: bytes, path: Path) -> dict:
    """The manifest in `data` (manifest.json's bytes), fully validated."""
    m = parse_json(data, path)
    if not isinstance(m, dict):
        raise ArtifactError(f"{path} must hold a JSON object, got {_show(m)}")
    if m.get("format") != FORMAT:
        raise ArtifactError(f"{path}: unknown manifest format {_show(m.get('format'))} "
                            f"(expected {FORMAT!r})")
    ver = m.get("format_version")
    if ver != FORMAT_VERSION or type(ver) is not int:
        newer = type(ver) is int and ver > FORMAT_VERSION
        raise ArtifactError(f"{path}: unknown artifact format version {_show(ver)}; this engine "
                            f"reads version {FORMAT_VERSION}" + ("; upgrade the engine" if newer else ""))
    for key in ("target", "module", "inputs", "outputs", "files"):
        if key not in m:
            raise ArtifactError(f"{path}: required field {key!r} is missing")
    check(m, MANIFEST_SCHEMA, path)
    _cross_checks(m, path)
    return m


def _cross_checks(m: dict, path: Path) -> None:
    def bad(field, problem):
        raise ArtifactError(f"{path}: field '{field}' {problem}")

    if m["module"] not in m["files"]:
        bad("files", f"lists no sha256 for the module {m['module']!r} (field 'module'): the "
                     f"manifest was edited")
    for name in (MANIFEST, SIGNATURE):
        if name in m["files"]:
            bad(_child("files", name), "must not be listed: the manifest cannot hash itself or "
                                       "its signature")
    if m.get("plan_file") is not None:
        if m["plan_file"] not in m["files"]:
            bad("plan_file", f"names {m['plan_file']!r}, which field 'files' does not list")
        if m.get("plan") is None:
            bad("plan", "is null but field 'plan_file' names a plan file")
    for kind in ("inputs", "outputs"):
        seen = set()
        for i, spec in enumerate(m[kind]):
            if spec["name"] in seen:
                bad(f"{kind}[{i}].name", f"repeats the name {spec['name']!r}")
            seen.add(spec["name"])
            n = 1
            for d in spec["shape"]:
                n *= d
            if n > MAX_ELEMENTS:
                bad(f"{kind}[{i}].shape", f"has {n} elements, more than {MAX_ELEMENTS}")
    if m.get("structure") is not None:
        from ..graph.outputs import check_structure
        try:
            check_structure(m["structure"], len(m["outputs"]))
        except ValueError as e:
            bad("structure", f"does not describe the {len(m['outputs'])} outputs: {e}")
    if m.get("plan") is not None:
        from mapping import Plan
        try:
            Plan.from_dict(m["plan"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            bad("plan", f"is not a plan this engine reads: {type(e).__name__}: {e}")


def parse_signature(data: bytes, path: Path) -> dict:
    """manifest.sig's content, validated against SIGNATURE_SCHEMA."""
    sig = parse_json(data, path)
    check(sig, SIGNATURE_SCHEMA, path)
    return sig
