"""Convs whose two dimensions differ (issue P5.1), through the native sparse kernel vs torch.

A conv whose vertical stride differs from its horizontal one (`nn.Conv2d(16, 32, 1,
stride=(2, 1))`) used to crash the kernel while building its phase planes: only some row phases
are read, and the others had no plane. Every ISA this CPU runs is checked over every
combination of kernel 1..3, stride 1..3, padding 0..2 and dilation 1..2 per dimension, plus
large one-sided strides and kernels, against float64 F.conv2d on the masked weight; and
engine.optimize on such a model (in a subprocess, so a crash fails the test, not the suite).
"""
from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from engine import _kernels as K
from engine.runtime.packing import pack

from kernel_catalog import ISAS, need

# (kh, kw, sh, sw, ph, pw, dh, dw)
EVERY_SMALL = list(itertools.product((1, 2, 3), (1, 2, 3), (1, 2, 3), (1, 2, 3), (0, 1, 2),
                                     (0, 1, 2), (1, 2), (1, 2)))
ONE_SIDED = ([(1, 1, s, 1, 0, 0, 1, 1) for s in range(2, 9)]
             + [(1, 1, 1, s, 0, 0, 1, 1) for s in range(2, 9)]
             + [(7, 1, 5, 1, 3, 0, 1, 1), (1, 7, 1, 6, 0, 3, 1, 3), (4, 2, 8, 3, 5, 0, 2, 3),
                (3, 3, 4, 1, 1, 1, 4, 1), (5, 1, 2, 1, 2, 0, 2, 1)])


def _check(isa, geom, i, gen):
    kh, kw, sh, sw, ph, pw, dh, dw = geom
    o, c = 5 + i % 4, 3
    h, w = 7 + i % 3 + (sh if sh > 3 else 0), 8 + i % 4 + (sw if sw > 3 else 0)
    weight = torch.randn(o, c, kh, kw, generator=gen, dtype=torch.float64).float()
    weight[torch.rand(weight.shape, generator=gen) < 0.5] = 0
    bias = torch.randn(o, generator=gen)
    x = torch.randn(2, c, h, w, generator=gen)
    p = pack(weight.numpy(), 1 + i % 8)
    conv = K.SparseConv(o, c, (kh, kw), (sh, sw), (ph, pw), (dh, dw), p.group_row0,
                        p.group_rows, p.group_ptr, p.entry_col, p.values, bias.numpy(), "none", isa)
    y = torch.from_numpy(conv.run(x.numpy()))
    ref = F.conv2d(x.double(), weight.double(), bias.double(), (sh, sw), (ph, pw), (dh, dw))
    if y.shape != ref.shape:
        return f"{geom}: shape {tuple(y.shape)}, torch {tuple(ref.shape)}"
    err = (y.double() - ref).abs().max().item()
    if not err <= 1e-4 * max(1.0, ref.abs().max().item()):
        return f"{geom}: max error {err:.3g}"
    return None


@pytest.fixture
def one_thread():
    """Thousands of tiny convs: thread dispatch (torch's and the kernels') would dominate."""
    torch_threads, kernel_threads = torch.get_num_threads(), K.get_num_threads()
    torch.set_num_threads(1)
    K.set_num_threads(1)
    yield
    torch.set_num_threads(torch_threads)
    K.set_num_threads(kernel_threads)


@pytest.mark.parametrize("isa", ISAS)
def test_every_asymmetric_geometry_matches_torch(isa, one_thread):
    need(isa)
    gen = torch.Generator().manual_seed(11)
    failures = [f for i, g in enumerate(EVERY_SMALL + ONE_SIDED) if (f := _check(isa, g, i, gen))]
    assert not failures, f"{len(failures)} geometries differ from torch:\n" + "\n".join(failures[:20])


OPTIMIZE = textwrap.dedent("""
    import torch
    from torch import nn
    import engine
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 32, 1, stride=(2, 1)), nn.ReLU(),
                          nn.Conv2d(32, 16, (3, 1), stride=(1, 3), padding=(1, 0))).eval()
    x = torch.randn(2, 16, 12, 10)
    opt = engine.optimize(model, (x[:1],), sparsity=0.5, measure=False, progress=False)
    assert opt.plan.choices and all(c.scheme != "dense" for c in opt.plan.choices), opt.plan
    y, ref = opt(x), opt.pruned_model(x)
    assert y.shape == ref.shape == model(x).shape, (y.shape, ref.shape)
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)
    print("ok")
""")


def test_optimize_a_model_with_unequal_strides():
    """The model of the issue, its layers running the native sparse kernel."""
    proc = subprocess.run([sys.executable, "-c", OPTIMIZE], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    assert proc.stdout.strip().endswith("ok")
