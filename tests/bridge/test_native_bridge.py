"""The native-kernel bridge: a TVM-compiled module calling our C++ kernels.

A Relax module built by hand calls `spe.v1.sparse_conv2d` / `spe.v1.depthwise_conv2d` /
`spe.v1.max_pool2d` through call_dps_packed; exported with the bridge object linked in, loaded
and run, it must match torch.
The aarch64 export must link (its run under qemu is covered by the artifact tests).
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

tvm = pytest.importorskip("tvm")
from tvm import relax  # noqa: E402

from engine.codegen.native_bridge import bridge_object  # noqa: E402
from engine.runtime.packing import pack  # noqa: E402


def _module(fn_name, x_shape, consts, out_shape):
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.type.TensorType(x_shape, "float32"))
    with bb.function("main", [xv]):
        with bb.dataflow():
            args = relax.Tuple([xv] + [relax.const(c) for c in consts])
            y = bb.emit(relax.call_dps_packed(fn_name, args,
                                              out_ty=relax.type.TensorType(out_shape, "float32")))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def _run_host(mod, x, tmp_path):
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    path = str(tmp_path / "m.so")
    ex.export_library(path, addons=[str(bridge_object(os.uname().machine))])
    vm = relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


# act: spe_activation codes; 3 hardswish, 4 silu
ACT_REF = {0: lambda y: y, 1: torch.relu, 2: lambda y: y.clamp(0, 6),
           3: torch.nn.functional.hardswish, 4: torch.nn.functional.silu}


@pytest.mark.parametrize("k,s,p,rows,act,bias", [(1, 1, 0, 4, 0, True), (3, 1, 1, 8, 1, False),
                                                  (1, 1, 0, 4, 3, True), (3, 2, 1, 4, 4, True),
                                                  (3, 2, 1, 4, 2, True), (7, 2, 3, 1, 1, True)])
def test_sparse_conv_through_tvm_matches_torch(tmp_path, k, s, p, rows, act, bias):
    g = torch.Generator().manual_seed(k * 10 + s)
    o, c, h = 24, 13, 17
    mask = (torch.rand(-(-o // rows), c, k, k, generator=g) > 0.6).float()
    w = torch.randn(o, c, k, k, generator=g) * mask.repeat_interleave(rows, 0)[:o]
    b = torch.randn(o, generator=g) if bias else torch.zeros(o)
    x = torch.randn(1, c, h, h, generator=g)
    ref = F.conv2d(x, w, b, s, p)
    ref = ACT_REF[act](ref)
    pw = pack(w.numpy(), rows)
    meta = np.array([o, c, k, k, s, s, p, p, 1, 1, act, int(bias), 0], np.int32)
    consts = [meta, pw.group_row0, pw.group_rows, pw.group_ptr, pw.entry_col, pw.values,
              b.numpy(), np.zeros(1, np.float32)]
    got = _run_host(_module("spe.v1.sparse_conv2d", (1, c, h, h), consts, tuple(ref.shape)),
                    x.numpy(), tmp_path)
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-4)


def _depthwise_module(x_shape, layers, out_shape):
    """main(x[, residual]) calling spe.v1.depthwise_conv2d once per (consts, residual?) layer,
    each on the previous layer's output."""
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.type.TensorType(x_shape, "float32"))
    rv = relax.Var("r", relax.type.TensorType(out_shape, "float32"))
    with_res = any(res for _, res in layers)
    with bb.function("main", [xv, rv] if with_res else [xv]):
        with bb.dataflow():
            cur = xv
            for consts, res in layers:
                args = [cur] + [relax.const(c) for c in consts]
                args.append(rv if res else relax.const(np.zeros(1, np.float32)))
                cur = bb.emit(relax.call_dps_packed(
                    "spe.v1.depthwise_conv2d", relax.Tuple(args),
                    out_ty=relax.type.TensorType(out_shape, "float32")))
            out = bb.emit_output(cur)
        bb.emit_func_output(out)
    return bb.get()


def _depthwise_consts(w, b, stride, pad, dil, act, residual):
    c, _, kh, kw = w.shape
    meta = np.array([c, c, kh, kw, stride, stride, pad, pad, dil, dil, act, int(b is not None),
                     int(residual)], np.int32)
    return [meta, w.numpy().reshape(c, kh, kw),
            b.numpy() if b is not None else np.zeros(1, np.float32)]


@pytest.mark.parametrize("k,s,p,d,act,bias,res", [(3, 1, 1, 1, 2, True, False),
                                                  (3, 2, 1, 1, 1, False, False),
                                                  (5, 2, 2, 1, 0, True, True),
                                                  (3, 1, 2, 2, 2, True, True),
                                                  (7, 3, 3, 1, 1, False, True),
                                                  (3, 1, 1, 1, 3, True, False),
                                                  (5, 2, 2, 1, 4, True, True)])
def test_depthwise_conv_through_tvm_matches_torch(tmp_path, k, s, p, d, act, bias, res):
    g = torch.Generator().manual_seed(k * 100 + s * 10 + d)
    c, h = 19, 23
    w = torch.randn(c, 1, k, k, generator=g)
    b = torch.randn(c, generator=g) if bias else None
    x = torch.randn(2, c, h, h + 4, generator=g)   # batch 2, not square
    ref = F.conv2d(x, w, b, s, p, d, groups=c)
    r = torch.randn(ref.shape, generator=g)
    if res:
        ref = ref + r
    ref = ACT_REF[act](ref)
    mod = _depthwise_module(tuple(x.shape), [(_depthwise_consts(w, b, s, p, d, act, res), res)],
                            tuple(ref.shape))
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    path = str(tmp_path / "m.so")
    ex.export_library(path, addons=[str(bridge_object(os.uname().machine))])
    vm = relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())
    args = [tvm.runtime.tensor(x.numpy())] + ([tvm.runtime.tensor(r.numpy())] if res else [])
    got = vm["main"](*args).numpy()
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-4)


def test_depthwise_layers_in_one_module_keep_their_own_weights(tmp_path):
    """Two layers of the same shape in one module: each call runs its own constants (the
    bridge caches a layer per weight constant)."""
    g = torch.Generator().manual_seed(4)
    c, h = 8, 12
    w1, w2 = torch.randn(c, 1, 3, 3, generator=g), torch.randn(c, 1, 3, 3, generator=g)
    b1, b2 = torch.randn(c, generator=g), torch.randn(c, generator=g)
    x = torch.randn(1, c, h, h, generator=g)
    ref = F.conv2d(F.conv2d(x, w1, b1, 1, 1, 1, c).relu(), w2, b2, 1, 1, 1, c).clamp(0, 6)
    layers = [(_depthwise_consts(w1, b1, 1, 1, 1, 1, False), False),
              (_depthwise_consts(w2, b2, 1, 1, 1, 2, False), False)]
    got = _run_host(_depthwise_module(tuple(x.shape), layers, tuple(ref.shape)), x.numpy(),
                    tmp_path)
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-4)


def test_depthwise_bad_layer_raises_a_clear_error(tmp_path):
    c = 6
    w = torch.randn(c, 1, 3, 3)
    consts = _depthwise_consts(w, None, 1, 1, 1, 0, False)
    consts[1] = consts[1][:4]                       # weight of 4 channels, meta says 6
    mod = _depthwise_module((1, c, 8, 8), [(consts, False)], (1, c, 8, 8))
    with pytest.raises(Exception, match="weight must be float32 with C\\*kh\\*kw = 54"):
        _run_host(mod, np.zeros((1, c, 8, 8), np.float32), tmp_path)


def test_max_pool_through_tvm_matches_torch(tmp_path):
    x = torch.randn(1, 8, 15, 15)
    ref = F.max_pool2d(x, 3, 2, 1)
    meta = np.array([3, 3, 2, 2, 1, 1], np.int32)
    got = _run_host(_module("spe.v1.max_pool2d", (1, 8, 15, 15), [meta], tuple(ref.shape)),
                    x.numpy(), tmp_path)
    np.testing.assert_array_equal(got, ref.numpy())


def test_aarch64_export_links_the_bridge(tmp_path):
    if shutil.which("aarch64-linux-gnu-g++") is None:
        pytest.skip("aarch64-linux-gnu-g++ missing (Debian package g++-aarch64-linux-gnu)")
    from tvm.support import cc
    meta = np.array([3, 3, 2, 2, 1, 1], np.int32)
    mod = _module("spe.v1.max_pool2d", (1, 4, 9, 9), [meta], (1, 4, 5, 5))
    ex = tvm.compile(mod, target=tvm.target.Target(
        {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}))
    path = tmp_path / "m.so"
    # the triple must be explicit: the packed-imports object is otherwise built for the host
    ex.export_library(str(path), fcompile=cc.cross_compiler(
        "aarch64-linux-gnu-g++", get_target_triple=lambda: "aarch64-linux-gnu"),
        addons=[str(bridge_object("aarch64"))])
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64
    syms = subprocess.run(["aarch64-linux-gnu-nm", "-C", str(path)], capture_output=True,
                          text=True).stdout
    assert "spe_sparse_conv_run" in syms and "spe_depthwise_conv_run" in syms
    assert "spe::dw::plane<spe::(anonymous namespace)::Neon" in syms  # NEON depthwise kernels



_PROFILE_RUN = """
import sys, numpy as np, tvm
from tvm import relax
vm = relax.VirtualMachine(tvm.runtime.load_module(sys.argv[1]), tvm.cpu())
x = tvm.runtime.tensor(np.load(sys.argv[2]))
for _ in range(int(sys.argv[3])):
    vm["main"](x)
"""


def test_spe_profile_reports_every_native_layer_at_exit(tmp_path):
    """SPE_PROFILE=path: at exit, one row per native layer (first-call order) with its op,
    output shape, the kernel the library chose and one timing per call; unset, nothing."""
    g = torch.Generator().manual_seed(5)
    c, h = 8, 12
    w1, w2 = torch.randn(c, 1, 3, 3, generator=g), torch.randn(c, 1, 3, 3, generator=g)
    layers = [(_depthwise_consts(w1, None, 2, 1, 1, 1, False), False),
              (_depthwise_consts(w2, None, 1, 1, 1, 2, False), False)]
    mod = _depthwise_module((1, c, h, h), layers, (1, c, h // 2, h // 2))
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    so = str(tmp_path / "m.so")
    ex.export_library(so, addons=[str(bridge_object(os.uname().machine))])
    np.save(tmp_path / "x.npy", torch.randn(1, c, h, h, generator=g).numpy())
    script = tmp_path / "run.py"
    script.write_text(_PROFILE_RUN)
    report = tmp_path / "profile.txt"
    env = dict(os.environ, SPE_PROFILE=str(report))
    subprocess.run([sys.executable, str(script), so, str(tmp_path / "x.npy"), "7"], env=env,
                   check=True, timeout=300)
    lines = report.read_text().splitlines()
    rows = [ln.split() for ln in lines if ln.split() and ln.split()[0].isdigit()]
    assert lines[0] == "spe profile: 2 layers" and len(rows) == 2, lines
    assert [r[1] for r in rows] == ["depthwise_conv2d", "depthwise_conv2d"]
    assert [r[2] for r in rows] == [f"{c}x{h // 2}x{h // 2}"] * 2
    assert rows[0][3].startswith("f32_dwconv_3x3s2") and rows[1][3].startswith("f32_dwconv_3x3s1")
    for r in rows:
        assert int(r[4]) == 7 and 0 < float(r[5]) <= float(r[6]), r
    assert lines[-1].startswith("spe profile: sum of medians")

    bad = tmp_path / "no-such-dir" / "profile.txt"      # unwritable: said, and the run is fine
    env["SPE_PROFILE"] = str(bad)
    r = subprocess.run([sys.executable, str(script), so, str(tmp_path / "x.npy"), "2"], env=env,
                       check=True, timeout=300, capture_output=True, text=True)
    assert "cannot append to SPE_PROFILE=" in r.stderr and str(bad) in r.stderr

    env.pop("SPE_PROFILE")
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    subprocess.run([sys.executable, str(script), so, str(tmp_path / "x.npy"), "2"], env=env,
                   check=True, timeout=300, cwd=quiet)
    assert not any(quiet.iterdir())
