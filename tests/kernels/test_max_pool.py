"""Native max pooling against torch (issue P5.4): same validation, same output sizes, same values.

engine._kernels.max_pool2d and F.max_pool2d are called on the same inputs over a sweep of
kernels, strides and paddings including the edges of torch's rules (stride 0 used to crash the
process with SIGFPE; C's truncating division accepted inputs torch rejects): either both
reject, or both give the same output, bit for bit, NaN included. NativeMaxPool2d.supports()
admits exactly the pools torch accepts (dilation 1, floor mode), and the module then agrees
with nn.MaxPool2d, its output_size with torch's shapes.
"""
from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine import _kernels as K
from engine.runtime.modules import NativeMaxPool2d

I32 = 2 ** 31 - 1


def _torch(x, k, s, p):
    try:
        return F.max_pool2d(torch.from_numpy(x), k, s, p), None
    except RuntimeError as e:
        return None, e


def _ours(x, k, s, p):
    try:
        return torch.from_numpy(K.max_pool2d(x, k, s, p)), None
    except (ValueError, TypeError) as e:
        return None, e


def _agree(x, k, s, p):
    """None if ours and torch agree on x, else what differs."""
    want, terr = _torch(x, k, s, p)
    got, oerr = _ours(x, k, s, p)
    where = f"input {x.shape} kernel {k} stride {s} padding {p}"
    if terr is not None or oerr is not None:
        if terr is None or oerr is None:
            return f"{where}: torch {terr or 'accepts'}, ours {oerr or 'accepts'}"
        return None
    if got.shape != want.shape:
        return f"{where}: shape {tuple(got.shape)}, torch {tuple(want.shape)}"
    if not torch.equal(got.isnan(), want.isnan()) or not torch.equal(got.nan_to_num(), want.nan_to_num()):
        return f"{where}: values differ"
    return None


def _input(rng, shape, nans=False):
    x = rng.standard_normal(shape).astype(np.float32)
    if nans and x.size:
        x[rng.random(shape) < 0.1] = np.nan
        x[rng.random(shape) < 0.05] = -np.inf
    return x


def test_sweep_agrees_with_torch():
    rng = np.random.default_rng(4)
    cases = list(itertools.product((0, 1, 2, 3, 5), (-1, 0, 1, 2, 3), (-1, 0, 1, 2)))  # k, s, p
    failures, accepted = [], 0
    for i, (k, s, p) in enumerate(cases):
        for h, w in ((1, 1), (2, 3), (4, 4), (5, 2), (7, 9)):
            kk = (k, max(k - i % 2, 0))  # square and not
            x = _input(rng, (1 + i % 2, 2, h, w), nans=i % 3 == 0)
            ss = (s, s if i % 4 else s + 1)
            err = _agree(x, kk, ss, (p, p))
            failures += [err] if err else []
            accepted += _torch(x, kk, ss, (p, p))[1] is None
    assert not failures, "\n".join(failures[:20])
    assert 50 < accepted < len(cases) * 5 - 50  # both outcomes, plenty of each


EDGES = [
    ((1, 2, 4, 4), (2, 2), (0, 2), (0, 0)),          # stride 0 (was SIGFPE)
    ((1, 2, 4, 4), (2, 2), (-1, 1), (0, 0)),
    ((1, 2, 2, 5), (3, 3), (2, 2), (0, 0)),          # floor: 0 rows (truncation gave 1)
    ((1, 2, 5, 2), (3, 3), (2, 2), (0, 0)),
    ((1, 2, 2, 4), (3, 3), (2, 2), (1, 1)),          # the same with padding: valid
    ((1, 2, 4, 4), (2, 2), (1, 1), (1, 1)),          # pad == k/2, even kernel: 5x5
    ((1, 2, 4, 4), (3, 3), (1, 1), (2, 1)),          # pad above half the kernel
    ((1, 0, 4, 4), (2, 2), (2, 2), (0, 0)),          # no channels
    ((1, 2, 0, 4), (2, 2), (2, 2), (0, 0)),          # empty plane
    ((0, 2, 4, 4), (2, 2), (2, 2), (0, 0)),          # empty batch: an empty output
    ((1, 2, 1, 1), (I32, I32), (1, 1), (I32 // 2, I32 // 2)),  # valid in torch: 1x1
    ((1, 2, 3, 3), (2, 2), (I32, I32), (0, 0)),      # huge stride: 1x1
    ((1, 2, 3, 3), (I32 + 1, 2), (1, 1), (0, 0)),    # beyond int32: both refuse
    ((1, 2, 3, 3), (2, 2), (2 ** 40, 1), (0, 0)),
    ((2, 3, 9, 7), (3, 2), (2, 3), (1, 1)),
]


@pytest.mark.parametrize("shape,k,s,p", EDGES)
def test_edges_agree_with_torch(shape, k, s, p):
    x = _input(np.random.default_rng(1), shape, nans=True)
    err = _agree(x, k, s, p)
    assert err is None, err


def test_rejections_name_the_problem():
    x = np.ones((1, 2, 4, 4), np.float32)
    for k, s, p, msg in [((2, 2), (0, 1), (0, 0), "stride"), ((0, 2), (1, 1), (0, 0), "kernel"),
                         ((3, 3), (1, 1), (2, 0), "padding"), ((5, 5), (2, 2), (0, 0), "too small")]:
        with pytest.raises(ValueError, match=msg):
            K.max_pool2d(x, k, s, p)


STRIDE_ZERO = textwrap.dedent("""
    import numpy as np
    from engine import _kernels as K
    try:
        K.max_pool2d(np.ones((1, 1, 4, 4), np.float32), (2, 2), (0, 1), (0, 0))
    except ValueError as e:
        print("refused:", e)
""")


def test_stride_zero_is_an_error_not_a_signal():
    """In a subprocess: the SIGFPE this was would take the test run down with it."""
    proc = subprocess.run([sys.executable, "-c", STRIDE_ZERO], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.startswith("refused:") and "stride" in proc.stdout


POOLS = [dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=c)
         for k, s, p, d, c in itertools.product((1, 2, 3, (3, 2)), (None, 1, 2, (1, 2)),
                                                (0, 1, 2, (1, 0)), (1, 2), (False, True))]


def _geometry_ok(m):
    """torch accepts the pool's geometry (on an input big enough for any of these pools)."""
    try:
        m(torch.zeros(1, 1, 16, 16))
        return True
    except RuntimeError:
        return False


@pytest.mark.parametrize("i", range(len(POOLS)))
def test_native_module_matches_torch_where_it_is_used(i):
    m = nn.MaxPool2d(**POOLS[i])
    pair = (lambda v: tuple(v) if isinstance(v, tuple) else (v, v))
    plain = pair(m.dilation) == (1, 1) and not m.ceil_mode
    assert NativeMaxPool2d.supports(m) == (plain and _geometry_ok(m)), POOLS[i]
    if not NativeMaxPool2d.supports(m):
        return
    native = NativeMaxPool2d(pair(m.kernel_size), pair(m.stride or m.kernel_size), pair(m.padding))
    rng = np.random.default_rng(i)
    for shape in [(2, 3, 9, 11), (1, 2, 1, 1), (1, 2, 2, 3), (3, 5, 6), (0, 2, 5, 5)]:
        x = torch.from_numpy(_input(rng, shape, nans=True))
        try:
            want = m(x)
        except RuntimeError:
            with pytest.raises(ValueError):
                native(x)
            continue
        got = native(x)
        assert got.shape == want.shape
        assert native.output_size(*x.shape[-2:]) == tuple(want.shape[-2:])
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("bad", [dict(kernel_size=2, stride=0), dict(kernel_size=0),
                                 dict(kernel_size=3, padding=2), dict(kernel_size=2, padding=-1),
                                 dict(kernel_size=(2, 0)), dict(kernel_size=2 ** 31)])
def test_supports_refuses_what_torch_refuses(bad):
    m = nn.MaxPool2d(**bad)
    with pytest.raises(RuntimeError):
        m(torch.zeros(1, 1, 8, 8))
    assert not NativeMaxPool2d.supports(m)


def _bridge_pool(tmp_path, x_shape, meta, out_shape):
    """A TVM-compiled module calling spe.v1.max_pool2d (the bridge linked in), run on ones."""
    tvm = pytest.importorskip("tvm")
    import os

    from tvm import relax

    from engine.codegen.native_bridge import bridge_object
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.type.TensorType(x_shape, "float32"))
    with bb.function("main", [xv]):
        with bb.dataflow():
            y = bb.emit(relax.call_dps_packed(
                "spe.v1.max_pool2d", relax.Tuple([xv, relax.const(np.array(meta, np.int32))]),
                out_ty=relax.type.TensorType(out_shape, "float32")))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    ex = tvm.compile(bb.get(), target=tvm.target.Target({"kind": "llvm"}))
    path = str(tmp_path / f"pool{len(list(tmp_path.iterdir()))}.so")
    ex.export_library(path, addons=[str(bridge_object(os.uname().machine))])
    vm = relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(np.ones(x_shape, np.float32))).numpy()


def test_bridge_checks_the_pool_and_its_output(tmp_path):
    """The TVM bridge gives torch's answer too, and refuses an output of the wrong shape
    (it used to write past it) or a geometry torch rejects."""
    assert _bridge_pool(tmp_path, (1, 2, 9, 9), [3, 3, 2, 2, 1, 1], (1, 2, 5, 5)).shape == (1, 2, 5, 5)
    for meta, out in [([3, 3, 2, 2, 1, 1], (1, 2, 9, 9)),    # output larger than the pool's
                      ([3, 3, 2, 2, 0, 0], (1, 2, 1, 4)),    # 2 rows, 3x3 window: torch rejects
                      ([2, 2, 0, 2, 0, 0], (1, 2, 1, 1))]:   # stride 0
        with pytest.raises(Exception, match="max_pool2d"):
            _bridge_pool(tmp_path, (1, 2, 2, 9), meta, out)
