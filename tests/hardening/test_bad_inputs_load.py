"""engine.load() refuses every bad artifact with an ArtifactError that names the problem (the
file, the manifest field, the key, the output), never a raw RecursionError / TypeError / hang,
and never after running code it should not have run. One row per case.

Each row damages a fresh copy of one small signed artifact (built once for the file), loads it,
and, when loading succeeds, calls it once with inputs of the manifest's shapes (what cannot be
checked before running is checked on the first call). $ENGINE_TEST_MARKER is set for every row:
a replaced model.so writes it from its constructor, so a row that dlopens it fails.
"""
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "artifact"))
from artifact_helpers import (MARKER_ENV, Case, TinyNet, build_marker_so, edit_manifest,  # noqa: E402
                              new_key, randomize_bn, replace_module, sign_in_place,
                              write_key_files)

import engine  # noqa: E402
from engine.errors import ArtifactError  # noqa: E402


class Ctx:
    """What a row may use: the key that signed the artifact and its files, and a scratch dir."""

    def __init__(self, key, pub, priv, marker_so, scratch):
        self.key, self.pub, self.priv, self.marker_so, self.scratch = key, pub, priv, marker_so, scratch


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    from engine.artifact import save_artifact
    from mapping import Choice, Plan
    root = tmp_path_factory.mktemp("bad-load")
    torch.manual_seed(0)
    case = Case("tiny", randomize_bn(TinyNet()), torch.randn(1, 3, 8, 8))
    key = new_key()
    plan = Plan("host", [Choice("conv", "block", (4, 1), 0.5, "native", reason="test"),
                         Choice("fc", reason="dense")], {"engine": "test"})
    save_artifact(root / "artifact", case.executable("host"), "host", case.inputs, case.outputs,
                  plan=plan, extra={"model": "TinyNet"})
    sign_in_place(root / "artifact", key)            # the documented format, by cryptography
    pub, priv = write_key_files(key, root, "release")
    return Ctx(key, pub, priv, build_marker_so(root), root)


def manifest(fn):
    """A row's damage: edit manifest.json's dict with `fn`."""
    return lambda d, c: edit_manifest(d, fn)


def raw_manifest(data):
    """A row's damage: replace manifest.json's bytes."""
    def damage(d, c):
        (d / "manifest.json").write_bytes(data.encode() if isinstance(data, str) else data)
    return damage


def module_size(text):
    """A row's damage: model.so's "size" in manifest.json written as `text` (JSON Python's json
    module would not write)."""
    def damage(d, c):
        p = d / "manifest.json"
        m = json.loads(p.read_text())
        old = f'"size": {m["files"]["model.so"]["size"]}'
        assert old in p.read_text()
        p.write_text(p.read_text().replace(old, f'"size": {text}', 1))
    return damage


def sparse_manifest(size):
    def damage(d, c):
        with open(d / "manifest.json", "r+b") as f:
            f.truncate(size)
    return damage


def fifo_manifest(d, c):
    (d / "manifest.json").unlink()
    os.mkfifo(d / "manifest.json")


def nested(depth):
    """`depth` nested lists inside manifest.json's "extra" (written as text: deeper than json.dumps
    can go)."""
    def damage(d, c):
        text = (d / "manifest.json").read_text()
        (d / "manifest.json").write_text(text.replace('"extra": {', '"extra": {"deep": ' + "[" * depth
                                                      + "]" * depth + ", ", 1))
    return damage


def module_bytes(fn):
    def damage(d, c):
        p = d / "model.so"
        p.write_bytes(fn(p.read_bytes()))
    return damage


def flip_byte(b):
    b = bytearray(b)
    b[len(b) // 2] ^= 0x01
    return bytes(b)


def replace_path(make):
    """model.so (listed, sha256 unchanged) replaced by what make(path) creates."""
    def damage(d, c):
        (d / "model.so").unlink()
        make(d / "model.so")
    return damage


def signature(fn):
    def damage(d, c):
        p = d / "manifest.sig"
        s = json.loads(p.read_text())
        fn(s)
        p.write_text(json.dumps(s))
    return damage


def edited_after_signing(d, c):
    """One space added: the same JSON, other bytes; the signature covers the exact bytes."""
    p = d / "manifest.json"
    p.write_bytes(p.read_bytes().replace(b'"module": "model.so"', b'"module":  "model.so"'))


def replaced_module(d, c):
    replace_module(d, c.marker_so)


def replaced_and_resigned(d, c):
    replace_module(d, c.marker_so)
    sign_in_place(d, new_key())


def unsigned(d, c):
    (d / "manifest.sig").unlink()


def into_file(d, c):
    """The path given is a file: returned as the path to load instead."""
    f = d.parent / "artifact.zip"
    f.write_bytes(b"PK\x03\x04")
    return f


KEYS = lambda c: {"trusted_keys": [c.pub]}  # noqa: E731
NONE = lambda c: {}  # noqa: E731
A = ArtifactError
F = r"manifest\.json: field "

# (id, damage(dir, ctx) [-> path to load instead], load kwargs(ctx), error type, message regex)
CASES = [
    # --- the manifest file itself
    ("manifest missing", lambda d, c: (d / "manifest.json").unlink(), NONE, A, r"has no manifest\.json"),
    ("manifest is a directory", lambda d, c: ((d / "manifest.json").unlink(),
                                              (d / "manifest.json").mkdir()), NONE, A,
     r"manifest\.json is a directory"),
    ("manifest is a FIFO", fifo_manifest, NONE, A, r"manifest\.json is not a regular file"),
    ("manifest 300 MB", sparse_manifest(300 << 20), NONE, A,
     r"manifest\.json is 314572800 bytes, more than the 4194304 .*refused without reading it"),
    ("manifest empty", raw_manifest(""), NONE, A, r"manifest\.json is not valid JSON"),
    ("manifest truncated", raw_manifest('{"format": "engine-artifact", '), NONE, A,
     r"manifest\.json is not valid JSON"),
    ("manifest not UTF-8", raw_manifest(b'{"format": "\xff\xfe"}'), NONE, A,
     r"manifest\.json is not UTF-8 text \(bad byte at offset 12\)"),
    ("manifest a list", raw_manifest("[1, 2]"), NONE, A, r"must hold a JSON object, got a list"),
    ("duplicate key", raw_manifest('{"format": "engine-artifact", "format": "x"}'), NONE, A,
     r"key 'format' appears twice"),
    ("nesting 100000 deep", nested(100000), NONE, A, r"nested deeper than 32 levels"),
    ("nesting 40 deep", nested(40), NONE, A, r"nested deeper than 32 levels"),
    ("5000-digit size", module_size("9" * 5000), NONE, A,
     F + r"'files\[\"model\.so\"\]\.size' must be a non-negative int, got a 5000-digit number"),
    ("NaN size", module_size("NaN"), NONE, A,
     F + r"'files\[\"model\.so\"\]\.size' must be a non-negative int, got NaN"),
    ("1e999 size", module_size("1e999"), NONE, A,
     F + r"'files\[\"model\.so\"\]\.size' must be a non-negative int, got Infinity"),
    ("unknown format", manifest(lambda m: m.update(format="onnx")), NONE, A,
     r"unknown manifest format 'onnx'"),
    ("newer format version", manifest(lambda m: m.update(format_version=2)), NONE, A,
     r"unknown artifact format version 2.*upgrade the engine"),
    ("format version string", manifest(lambda m: m.update(format_version="1")), NONE, A,
     r"unknown artifact format version '1'"),
    ("required field missing", manifest(lambda m: m.pop("outputs")), NONE, A,
     r"required field 'outputs' is missing"),
    ("unknown field", manifest(lambda m: m.update(hacked=True)), NONE, A,
     F + r"'hacked' is not a field of a format 1 manifest"),
    # --- wrong field types and ranges
    ("inputs an object", manifest(lambda m: m.update(inputs={"x": 1})), NONE, A,
     F + r"'inputs' must be a list of tensor specs, got an object"),
    ("inputs empty", manifest(lambda m: m.update(inputs=[])), NONE, A,
     F + r"'inputs' must be a list of tensor specs of 1 to 256 items, got 0"),
    ("shape dim string", manifest(lambda m: m["outputs"][0]["shape"].__setitem__(1, "x")), NONE, A,
     F + r"'outputs\[0\]\.shape\[1\]' must be a non-negative int, got 'x'"),
    ("shape dim float", manifest(lambda m: m["inputs"][0]["shape"].__setitem__(0, 1.0)), NONE, A,
     F + r"'inputs\[0\]\.shape\[0\]' must be a non-negative int, got 1\.0"),
    ("shape dim bool", manifest(lambda m: m["inputs"][0]["shape"].__setitem__(0, True)), NONE, A,
     F + r"'inputs\[0\]\.shape\[0\]' must be a non-negative int, got true"),
    ("shape dim negative", manifest(lambda m: m["inputs"][0].update(shape=[-1, 3])), NONE, A,
     F + r"'inputs\[0\]\.shape\[0\]' must be a non-negative int, got -1"),
    ("shape too large", manifest(lambda m: m["inputs"][0].update(shape=[2**31 - 1] * 3)), NONE, A,
     F + r"'inputs\[0\]\.shape' has \d+ elements, more than 1099511627776"),
    ("shape a string", manifest(lambda m: m["inputs"][0].update(shape="1,3,8,8")), NONE, A,
     F + r"'inputs\[0\]\.shape' must be a list of dims, got '1,3,8,8'"),
    ("dtype unknown", manifest(lambda m: m["inputs"][0].update(dtype="float33")), NONE, A,
     F + r"'inputs\[0\]\.dtype' must be one of \[.*'float32'.*\], got 'float33'"),
    ("name null", manifest(lambda m: m["outputs"][0].update(name=None)), NONE, A,
     F + r"'outputs\[0\]\.name' must be a name without control characters, got null"),
    ("names repeated", manifest(lambda m: m["outputs"].append(dict(m["outputs"][0]))), NONE, A,
     F + r"'outputs\[1\]\.name' repeats the name 'logits'"),
    ("target a string", manifest(lambda m: m.update(target="host")), NONE, A,
     F + r"'target' must be an object, got 'host'"),
    ("target.llvm a list", manifest(lambda m: m["target"].update(llvm=[])), NONE, A,
     F + r"'target\.llvm' must be an object, got a list of 0 items"),
    ("cpu flags a string", manifest(lambda m: m["target"].update(required_cpu_flags="avx")), NONE,
     A, F + r"'target\.required_cpu_flags' must be a list of CPU flags, got 'avx'"),
    ("files a list", manifest(lambda m: m.update(files=[])), NONE, A,
     F + r"'files' must be an object mapping file names to \{sha256, size\}, got a list"),
    ("file entry a string", manifest(lambda m: m["files"].update({"model.so": "abc"})), NONE, A,
     F + r"'files\[\"model\.so\"\]' must be an object, got 'abc'"),
    ("sha256 an int", manifest(lambda m: m["files"]["model.so"].update(sha256=5)), NONE, A,
     F + r"'files\[\"model\.so\"\]\.sha256' must be 64 lowercase hex digits, got 5"),
    ("size negative", manifest(lambda m: m["files"]["model.so"].update(size=-1)), NONE, A,
     F + r"'files\[\"model\.so\"\]\.size' must be a non-negative int, got -1"),
    ("module an int", manifest(lambda m: m.update(module=5)), NONE, A,
     F + r"'module' must be a plain file name .*, got 5"),
    ("entry a list", manifest(lambda m: m.update(entry=["main"])), NONE, A,
     F + r"'entry' must be a function name, got a list of 1 items"),
    ("plan a string", manifest(lambda m: m.update(plan="x")), NONE, A,
     F + r"'plan' must be an object, got 'x'"),
    ("plan unreadable", manifest(lambda m: m.update(plan={"bad": 1})), NONE, A,
     F + r"'plan' is not a plan this engine reads"),
    ("plan differs from plan.json", manifest(lambda m: m["plan"]["choices"][0].update(sparsity=0.9)),
     NONE, A, F + r"'plan' differs from plan\.json"),
    # --- the files the manifest lists
    ("path traversal", manifest(lambda m: m["files"].update(
        {"../../etc/passwd": {"sha256": "0" * 64, "size": 1}})), NONE, A,
     F + r"'files\[\"\.\./\.\./etc/passwd\"\]' is not a file inside the artifact"),
    ("absolute path", manifest(lambda m: m["files"].update({"/etc/passwd": {"sha256": "0" * 64,
                                                                            "size": 1}})),
     NONE, A, F + r"'files\[\"/etc/passwd\"\]' is not a file inside the artifact"),
    ("module outside", manifest(lambda m: m.update(module="../model.so")), NONE, A,
     F + r"'module' must be a plain file name"),
    ("module not listed", manifest(lambda m: m["files"].pop("model.so")), NONE, A,
     F + r"'files' lists no sha256 for the module 'model\.so'"),
    ("manifest lists itself", manifest(lambda m: m["files"].update(
        {"manifest.json": {"sha256": "0" * 64, "size": 1}})), NONE, A,
     F + r"'files\[\"manifest\.json\"\]' must not be listed"),
    ("model.so missing", lambda d, c: (d / "model.so").unlink(), NONE, A,
     r"model\.so is missing: the artifact is incomplete"),
    ("model.so truncated", module_bytes(lambda b: b[:-100]), NONE, A,
     r"model\.so is truncated: \d+ bytes, manifest\.json says \d+"),
    ("model.so larger", module_bytes(lambda b: b + b"\0"), NONE, A,
     r"model\.so is larger than written"),
    ("model.so tampered", module_bytes(flip_byte), NONE, A,
     r"model\.so does not match manifest\.json: sha256 .*tampered or corrupted"),
    ("model.so a directory", replace_path(lambda p: p.mkdir()), NONE, A, r"model\.so is a directory"),
    ("model.so -> /dev/zero", replace_path(lambda p: p.symlink_to("/dev/zero")), NONE, A,
     r"model\.so is not a regular file"),
    ("plan.json tampered", lambda d, c: (d / "plan.json").write_text("{}"), NONE, A,
     r"plan\.json is truncated"),
    # --- the directory
    ("a file, not a directory", into_file, NONE, A,
     r"artifact\.zip is not an artifact directory \(it is a file\)"),
    ("no such directory", lambda d, c: d.parent / "nope", NONE, A,
     r"nope is not an artifact directory \(it does not exist\)"),
    # --- the target
    ("other arch", manifest(lambda m: m["target"].update(arch="riscv64")), NONE, A,
     r"is riscv64 but this machine is .*qemu-riscv64"),
    ("android build", manifest(lambda m: m["target"].update(os="android")), NONE, A,
     r"linked for an Android app"),
    ("missing CPU features", manifest(lambda m: m["target"].update(required_cpu_flags=["avx9000"])),
     NONE, A, r"CPU features this CPU lacks: \['avx9000'\]"),
    # --- specs that do not describe the module
    ("wrong output shape", manifest(lambda m: m["outputs"][0].update(shape=[1, 7])), NONE, A,
     r"output 0 'logits' of .*model\.so is float32\[1, 5\], but field 'outputs\[0\]' of "
     r"manifest\.json says float32\[1, 7\]"),
    ("wrong output dtype", manifest(lambda m: m["outputs"][0].update(dtype="float16")), NONE, A,
     r"output 0 'logits' .* is float32\[1, 5\], but field 'outputs\[0\]' .* says float16\[1, 5\]"),
    ("extra output", manifest(lambda m: m["outputs"].append(
        {"name": "aux", "shape": [1], "dtype": "float32"})), NONE, A,
     r"model\.so returned 1 output\(s\), but field 'outputs' of manifest\.json lists 2"),
    ("extra input", manifest(lambda m: m["inputs"].append(
        {"name": "y", "shape": [2], "dtype": "float32"})), NONE, A,
     r"its function 'main' takes 1 input\(s\) \['x'\], but field 'inputs' of manifest\.json "
     r"lists 2"),
    ("wrong input shape", manifest(lambda m: m["inputs"][0].update(shape=[1, 3, 16, 16])), NONE, A,
     r"input 0 'x': .*model\.so expects R\.Tensor\(\(1, 3, 8, 8\), dtype=\"float32\"\), but field "
     r"'inputs\[0\]' of manifest\.json says float32\[1, 3, 16, 16\]"),
    ("entry not in module", manifest(lambda m: m.update(entry="predict")), NONE, A,
     r"could not load .*model\.so.*predict"),
    # --- signatures and keys
    ("unsigned, trusted_keys given", unsigned, KEYS, A,
     r"is not signed \(no manifest\.sig\), but trusted_keys were given: refusing to load it"),
    ("untrusted signer", lambda d, c: sign_in_place(d, new_key()), KEYS, A,
     r"manifest\.sig: signed by key [0-9a-f]{16}, which is not a trusted key \(trusted: "
     r"[0-9a-f]{16}\)"),
    ("manifest edited after signing", edited_after_signing, KEYS, A,
     r"manifest\.sig: the Ed25519 signature does not verify with trusted key [0-9a-f]{16}: "
     r"manifest\.json was modified after it was signed"),
    ("signature bytes damaged", signature(lambda s: s.update(signature="ab" * 64)), KEYS, A,
     r"signature does not verify"),
    ("signature not JSON", lambda d, c: (d / "manifest.sig").write_text("sig"), KEYS, A,
     r"manifest\.sig is not valid JSON"),
    ("signature field type", signature(lambda s: s.update(signature=7)), KEYS, A,
     r"manifest\.sig: field 'signature' must be 128 lowercase hex digits, got 7"),
    ("signature algorithm", signature(lambda s: s.update(algorithm="rsa")), KEYS, A,
     r"manifest\.sig: field 'algorithm' must be one of \['ed25519'\], got 'rsa'"),
    ("signature 1 MB", lambda d, c: (d / "manifest.sig").write_bytes(b" " * (1 << 20)), KEYS, A,
     r"manifest\.sig is 1048576 bytes, more than the 65536"),
    ("replaced model.so, sha256 updated", replaced_module, KEYS, A,
     r"signature does not verify"),
    ("replaced model.so, re-signed", replaced_and_resigned, KEYS, A, r"which is not a trusted key"),
    ("trusted_keys empty", None, lambda c: {"trusted_keys": []}, A, r"trusted_keys is empty"),
    ("trusted key file missing", None, lambda c: {"trusted_keys": [c.scratch / "no.pub"]}, A,
     r"trusted_keys\[0\]: .*no\.pub is missing: no such key file"),
    ("trusted key a private key", None, lambda c: {"trusted_keys": [c.priv]}, A,
     r"trusted_keys\[0\] .*release\.pem: not a PEM public key"),
    ("trusted key 5 raw bytes", None, lambda c: {"trusted_keys": [b"short"]}, A,
     r"trusted_keys\[0\]: raw Ed25519 public keys are 32 bytes, got 5"),
    ("trusted_keys an int", None, lambda c: {"trusted_keys": 42}, A,
     r"trusted_keys must be a key or a list of keys, got int"),
    ("verify=False with keys", None, lambda c: {"trusted_keys": [c.pub], "verify": False}, A,
     r"verify=False cannot be combined with trusted_keys"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_load_refuses(case, ctx, tmp_path, monkeypatch):
    _, damage, kwargs, err, pattern = case
    d = tmp_path / "artifact"
    shutil.copytree(ctx.scratch / "artifact", d)
    target = d
    if damage is not None:
        out = damage(d, ctx)
        target = out if isinstance(out, Path) else d
    marker = tmp_path / "constructor-ran"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    with pytest.raises(err) as ei:
        loaded = engine.load(target, **kwargs(ctx))
        loaded(*[np.zeros(s.shape, s.dtype) for s in loaded.inputs])     # the first call
    assert ei.type is err, f"{ei.type.__name__}: {ei.value}"
    assert re.search(pattern, str(ei.value)), f"message does not match {pattern!r}:\n{ei.value}"
    assert not marker.exists(), "a replaced model.so was dlopened before the refusal"


def test_the_artifact_itself_loads(ctx, tmp_path):
    """The rows' starting point is sound: it loads, signed, and runs."""
    d = tmp_path / "artifact"
    shutil.copytree(ctx.scratch / "artifact", d)
    loaded = engine.load(d, trusted_keys=[ctx.pub])
    assert loaded.signed_by is not None
    out = loaded(np.zeros((1, 3, 8, 8), np.float32))
    assert out.shape == (1, 5) and np.isfinite(out).all()
