"""The native-kernel bridge: a TVM-compiled module calling our C++ kernels.

A Relax module built by hand calls `spe.v1.sparse_conv2d` / `spe.v1.max_pool2d` through
call_dps_packed; exported with the bridge object linked in, loaded and run, it must match torch.
The aarch64 export must link (its run under qemu is covered by the artifact tests).
"""
import os
import shutil
import subprocess

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


@pytest.mark.parametrize("k,s,p,rows,act,bias", [(1, 1, 0, 4, 0, True), (3, 1, 1, 8, 1, False),
                                                  (3, 2, 1, 4, 2, True), (7, 2, 3, 1, 1, True)])
def test_sparse_conv_through_tvm_matches_torch(tmp_path, k, s, p, rows, act, bias):
    g = torch.Generator().manual_seed(k * 10 + s)
    o, c, h = 24, 13, 17
    mask = (torch.rand(-(-o // rows), c, k, k, generator=g) > 0.6).float()
    w = torch.randn(o, c, k, k, generator=g) * mask.repeat_interleave(rows, 0)[:o]
    b = torch.randn(o, generator=g) if bias else torch.zeros(o)
    x = torch.randn(1, c, h, h, generator=g)
    ref = F.conv2d(x, w, b, s, p)
    ref = {0: ref, 1: ref.relu(), 2: ref.clamp(0, 6)}[act]
    pw = pack(w.numpy(), rows)
    meta = np.array([o, c, k, k, s, s, p, p, 1, 1, act, int(bias), 0], np.int32)
    consts = [meta, pw.group_row0, pw.group_rows, pw.group_ptr, pw.entry_col, pw.values,
              b.numpy(), np.zeros(1, np.float32)]
    got = _run_host(_module("spe.v1.sparse_conv2d", (1, c, h, h), consts, tuple(ref.shape)),
                    x.numpy(), tmp_path)
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-4)


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
    assert "spe_sparse_conv_run" in syms
