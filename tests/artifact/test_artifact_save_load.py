"""Host artifacts: save -> load -> run matches torch; the manifest is complete and its checksums
are right; writing is atomic (a failed save leaves no partial artifact, an old one intact)."""
from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime

import numpy as np
import pytest
import torch

import engine
from engine import artifact as art
from engine.artifact import FORMAT, FORMAT_VERSION, load_artifact, save_artifact
from engine.artifact import writer as art_writer
from engine.targets import toolchain
from engine.errors import ArtifactError, EngineError
from mapping import Plan

from artifact_helpers import assert_close


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _tree(d):
    return {p.relative_to(d).as_posix(): _sha(p) for p in sorted(d.rglob("*")) if p.is_file()}


def _leftovers(parent, name):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


@pytest.mark.parametrize("case_name", ["mobilenet_case", "resnet_case"])
def test_host_artifact_matches_torch(case_name, request, tmp_path):
    case = request.getfixturevalue(case_name)
    path = save_artifact(tmp_path / case.name, case.executable("host"), "host",
                         case.inputs, case.outputs)
    assert path == (tmp_path / case.name).absolute()
    loaded = load_artifact(path)
    out = loaded(case.x)                                   # torch in -> torch out
    assert isinstance(out, torch.Tensor)
    assert_close(out, case.ref)
    out_np = loaded(case.x.numpy())                        # numpy in -> numpy out
    assert isinstance(out_np, np.ndarray)
    assert_close(out_np, case.ref)
    out_kw = loaded(x=case.x)                              # by input name
    assert_close(out_kw, case.ref)
    # a second input: the VM's pooled buffers must not leak the previous result
    x2 = torch.randn(case.x.shape)
    with torch.no_grad():
        assert_close(loaded(x2), case.model(x2))
    assert_close(out, case.ref)                            # earlier result not overwritten


def test_misaligned_torch_input(tiny_case, tiny_artifact):
    loaded = load_artifact(tiny_artifact)
    n = tiny_case.x.numel()
    buf = torch.empty(n + 1)
    x = buf[1:].view(tiny_case.x.shape)                    # data pointer 4 bytes off alignment
    x.copy_(tiny_case.x)
    assert x.data_ptr() % 64 != 0
    assert_close(loaded(x), tiny_case.ref)


def test_manifest_fields_and_checksums(tiny_case, tiny_artifact):
    d = tiny_artifact
    assert sorted(p.name for p in d.iterdir()) == ["manifest.json", "model.so", "plan.json"]
    m = json.loads((d / "manifest.json").read_text())
    import tvm
    import tvm_ffi
    assert m["format"] == FORMAT and m["format_version"] == FORMAT_VERSION
    assert m["engine_version"] == engine.__version__
    assert m["tvm_version"] == tvm.__version__
    assert m["tvm_ffi_version"] == tvm_ffi.__version__
    assert datetime.fromisoformat(m["created_at"]).tzinfo is not None
    t = m["target"]
    from engine.targets import get_target
    host = get_target("host")
    assert t["name"] == "host" and t["arch"] == art.host_arch() and t["llvm"] == host.llvm
    assert t["os"] == "linux" and isinstance(t["required_cpu_flags"], list)
    assert m["module"] == "model.so" and m["entry"] == "main"
    assert m["inputs"] == [{"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32"}]
    assert m["outputs"] == [{"name": "logits", "shape": [1, 5], "dtype": "float32"}]
    assert m["extra"] == {"model": "TinyNet"}
    # the plan: embedded and as plan.json, both round-trip to the same Plan
    plan = Plan.from_dict(m["plan"])
    assert plan["conv"].block == (4, 1) and plan["conv"].sparsity == 0.5
    assert Plan.load(d / "plan.json").to_dict() == plan.to_dict()
    assert m["plan_file"] == "plan.json"
    assert load_artifact(d).plan.to_dict() == plan.to_dict()
    # sha256 + size of every other file, computed independently here
    others = {p.name for p in d.iterdir() if p.name != "manifest.json"}
    assert set(m["files"]) == others
    for name, entry in m["files"].items():
        assert entry["sha256"] == _sha(d / name)
        assert entry["size"] == (d / name).stat().st_size


def test_no_plan_means_no_plan_file(tiny_case, tmp_path):
    d = save_artifact(tmp_path / "a", tiny_case.executable("host"), "host", tiny_case.inputs,
                      tiny_case.outputs)
    m = json.loads((d / "manifest.json").read_text())
    assert m["plan"] is None and m["plan_file"] is None and m["extra"] == {}
    assert sorted(p.name for p in d.iterdir()) == ["manifest.json", "model.so"]
    assert load_artifact(d).plan is None
    assert_close(load_artifact(d)(tiny_case.x), tiny_case.ref)
    # directory mode follows the umask (not mkdtemp's 0700): apps/other users can read it
    umask = os.umask(0)
    os.umask(umask)
    assert (d.stat().st_mode & 0o777) == (0o777 & ~umask)


def test_failure_mid_save_leaves_nothing(tiny_case, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full (injected)")
    monkeypatch.setattr(art_writer, "_manifest", boom)           # after model.so and plan.json exist
    dest = tmp_path / "out" / "artifact"
    with pytest.raises(ArtifactError, match="disk full"):
        save_artifact(dest, tiny_case.executable("host"), "host", tiny_case.inputs,
                      tiny_case.outputs, plan={"format": 1, "target": "host", "choices": []})
    assert not dest.exists()
    assert _leftovers(dest.parent, "artifact") == []


def test_failing_export_leaves_nothing(tiny_case, tmp_path):
    class HalfExport:
        """Writes half a module, then dies (a crashing linker)."""
        def export_library(self, path):
            with open(path, "wb") as f:
                f.write(b"\x7fELF" + b"\0" * 100)
            raise RuntimeError("linker killed (injected)")
    dest = tmp_path / "artifact"
    with pytest.raises(ArtifactError, match="linker killed") as ei:
        save_artifact(dest, HalfExport(), "host", tiny_case.inputs, tiny_case.outputs)
    assert "nothing was written" in str(ei.value)
    assert not dest.exists() and _leftovers(tmp_path, "artifact") == []


def test_failed_resave_keeps_existing_artifact(tiny_case, tiny_copy, monkeypatch):
    before = _tree(tiny_copy)
    real = art_writer._fsync_tree

    def fail_after_everything_written(root):
        real(root)
        raise OSError("power cut (injected)")
    monkeypatch.setattr(art_writer, "_fsync_tree", fail_after_everything_written)
    with pytest.raises(ArtifactError, match="power cut"):
        save_artifact(tiny_copy, tiny_case.executable("host"), "host", tiny_case.inputs,
                      tiny_case.outputs, extra={"version": 2})
    assert _tree(tiny_copy) == before
    assert _leftovers(tiny_copy.parent, tiny_copy.name) == []
    monkeypatch.undo()
    assert_close(load_artifact(tiny_copy)(tiny_case.x), tiny_case.ref)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "rename-fallback"])
def test_resave_replaces_whole_artifact(tiny_case, tiny_copy, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(art_writer, "_exchange", lambda a, b: False)
    (tiny_copy / "stale.txt").write_text("from an older artifact")
    save_artifact(tiny_copy, tiny_case.executable("host"), "host", tiny_case.inputs,
                  tiny_case.outputs, extra={"version": 2}, overwrite=True)
    assert not (tiny_copy / "stale.txt").exists()          # replaced, not merged
    assert not (tiny_copy / "plan.json").exists()
    assert json.loads((tiny_copy / "manifest.json").read_text())["extra"] == {"version": 2}
    assert _leftovers(tiny_copy.parent, tiny_copy.name) == []
    assert_close(load_artifact(tiny_copy)(tiny_case.x), tiny_case.ref)


def test_save_refuses_to_clobber_non_artifact(tiny_case, tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    (d / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(ArtifactError, match="not an artifact"):
        save_artifact(d, tiny_case.executable("host"), "host", tiny_case.inputs, tiny_case.outputs)
    assert (d / "cat.jpg").read_bytes() == b"meow"
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ArtifactError, match="exists and is not a directory"):
        save_artifact(f, tiny_case.executable("host"), "host", tiny_case.inputs, tiny_case.outputs)


def test_save_validates_arguments(tiny_case, tmp_path):
    exe = tiny_case.executable("host")
    with pytest.raises(ArtifactError, match="inputs"):
        save_artifact(tmp_path / "a", exe, "host", None, tiny_case.outputs)
    with pytest.raises(ArtifactError, match=r"\(name, shape, dtype\)"):
        save_artifact(tmp_path / "a", exe, "host", [("x", "bad")], tiny_case.outputs)
    with pytest.raises(ArtifactError, match="JSON"):
        save_artifact(tmp_path / "a", exe, "host", tiny_case.inputs, tiny_case.outputs,
                      extra={"f": object()})
    with pytest.raises(EngineError, match="unknown target"):
        save_artifact(tmp_path / "a", exe, "pdp11", tiny_case.inputs, tiny_case.outputs)
    assert not (tmp_path / "a").exists()


def test_missing_cross_compiler_named(tiny_case, tmp_path, monkeypatch):
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None)
    with pytest.raises(ArtifactError) as ei:
        save_artifact(tmp_path / "a", tiny_case.executable("host"), "arm64", tiny_case.inputs,
                      tiny_case.outputs)
    msg = str(ei.value)
    assert "aarch64-linux-gnu-g++" in msg and "g++-aarch64-linux-gnu" in msg
    assert not (tmp_path / "a").exists()


def test_deterministic_input_formula():
    x = art.deterministic_input((2, 3))
    k = (np.arange(6) * 37 + 11) % 256
    np.testing.assert_array_equal(x.ravel(), (k / 128.0 - 1.0).astype(np.float32))
    assert x.dtype == np.float32 and x.min() >= -1 and x.max() < 1


class FakeCompiledModel:
    """What engine.codegen will hand over: an Executable plus target and specs."""

    def __init__(self, exe, target, inputs, outputs):
        self.executable, self.target, self.inputs, self.outputs = exe, target, inputs, outputs
        self.cc_seen = "not called"

    def export_library(self, path, cc=None):
        self.cc_seen = cc
        kw = {"cc": cc} if cc else {}
        self.executable.export_library(path, **kw)


def test_compiled_model_duck_type(tiny_case, tmp_path):
    from engine.targets import get_target
    cm = FakeCompiledModel(tiny_case.executable("host"), get_target("host"), tiny_case.inputs,
                           tiny_case.outputs)
    d = save_artifact(tmp_path / "cm", cm)                 # target / specs from the object
    assert cm.cc_seen is None                              # host: TVM's default compiler
    loaded = load_artifact(d)
    assert [s.name for s in loaded.inputs] == ["x"] and loaded.target["name"] == "host"
    assert_close(loaded(tiny_case.x), tiny_case.ref)


def test_compiled_model_gets_cross_compiler(tiny_case, tmp_path):
    import shutil
    if shutil.which("aarch64-linux-gnu-g++") is None:
        pytest.skip("aarch64-linux-gnu-g++ not found: install the Debian package "
                    "g++-aarch64-linux-gnu (scripts/install.sh does)")
    from artifact_helpers import elf_machine
    cm = FakeCompiledModel(tiny_case.executable("arm64"), "arm64", tiny_case.inputs,
                           tiny_case.outputs)
    d = save_artifact(tmp_path / "cm", cm)
    assert cm.cc_seen.endswith("aarch64-linux-gnu-g++")
    assert elf_machine(d / "model.so") == "aarch64"
    m = json.loads((d / "manifest.json").read_text())
    assert m["target"]["arch"] == "aarch64" and m["target"]["required_cpu_flags"] == ["asimd"]
    with pytest.raises(ArtifactError, match="must be run on an aarch64 device"):
        load_artifact(d)


def test_same_input_tensor_again_sees_its_current_contents(tiny_case, tiny_artifact):
    """A torch input passed again reuses its zero-copy view (the call path's fast case): the
    run must see what the tensor holds now, and a tensor whose memory or layout changed in
    place must not be run through the old view."""
    loaded = load_artifact(tiny_artifact)
    model = tiny_case.model
    x = tiny_case.x.clone()
    assert_close(loaded(x), tiny_case.ref)
    with torch.no_grad():
        x.mul_(-0.5).add_(0.25)                            # same tensor, new values
        assert_close(loaded(x), model(x))
        x.set_(x.clone())                                  # same object, new memory
        x.add_(1.0)
        assert_close(loaded(x), model(x))
    shape = tuple(x.shape)
    x.resize_(shape[0], shape[1], shape[2] * 2, shape[3] // 2)   # same memory, new shape
    with pytest.raises(ArtifactError, match=r"input 0 'x' is float32\["):
        loaded(x)
    x.resize_(*shape)
    with torch.no_grad():
        assert_close(loaded(x), model(x))
        t = x.transpose(2, 3)                              # a non-contiguous view: copied
        assert_close(loaded(t), model(t.contiguous()))
        assert_close(loaded(x), model(x))


def _unaligned(a: np.ndarray, offset_floats: int) -> np.ndarray:
    """A C-contiguous float32 copy of a whose data starts offset_floats * 4 bytes past 64."""
    buf = np.empty(a.size + 32, np.float32)
    start = (-buf.ctypes.data % 64) // 4 + offset_floats
    out = buf[start:start + a.size].reshape(a.shape)
    out[...] = a
    return out


def test_numpy_inputs_aligned_or_not_each_run_their_own_values(tiny_case, tiny_artifact):
    """numpy inputs: 64-byte aligned ones are viewed in place, others (np.load's, mostly) go
    through a staging buffer that the next call rewrites; every call must run its own input
    and return results of its own (earlier ones untouched)."""
    loaded = load_artifact(tiny_artifact)
    model = tiny_case.model
    base = tiny_case.x.numpy()
    outs, refs = [], []
    for k, off in enumerate([4, 0, 8, 0, 4]):
        x = _unaligned(base * (1.0 - 0.3 * k) + 0.1 * k, off)
        assert (x.ctypes.data % 64 == 0) == (off == 0)
        outs.append(loaded(x))
        with torch.no_grad():
            refs.append(model(torch.from_numpy(x.copy())))
        if off == 0:                                       # viewed in place: see new values
            x *= -1.0
            with torch.no_grad():
                assert_close(loaded(x), model(torch.from_numpy(x.copy())))
    for o, r in zip(outs, refs):
        assert isinstance(o, np.ndarray)
        assert_close(o, r)
    ro = _unaligned(base, 0)                               # aligned but read-only: staged
    ro.flags.writeable = False
    with torch.no_grad():
        assert_close(loaded(ro), model(torch.from_numpy(ro.copy())))
    with pytest.raises(ArtifactError, match="float64"):    # no silent cast into the staging
        loaded(base.astype(np.float64))
