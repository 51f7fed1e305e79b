"""Tests of the f32 direct depthwise conv kernels (engine._kernels.DepthwiseConv) against torch.

Every ISA variant this CPU can run, and every f32_dwconv kernel the library lists
(engine._kernels.list_kernels(): kernels/src/dwconv/dwconv_list.h), is checked against float64
F.conv2d(groups=C) plus bias, residual and activation; every layer must run the kernel the list
has for its geometry. Variants the CPU (or build) cannot run are skipped at run time, never left
out of the list. The sweep varies one or two things at a time around a base case: per listed
kernel, a specialised one at padding 0, 1, 2 and larger than its kernel, the generic one over
other kernels, strides and dilations; per ISA, tiny images, output widths on and one either side of
the vector widths (4, 8, 16) and of the unrolled blocks (up to 4 vectors), wide and tall images
(several row blocks), batch > 1, 1 and odd channels, the epilogue. Data are seeded from the case
name, so every ISA sees the same numbers. kernels/tests/kernel_tests.cc runs the same kind of
sweep through the C API (and NEON under qemu-aarch64).
"""
from __future__ import annotations

import itertools
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine import _kernels as K

from kernel_catalog import ACTS, BY_NAME, DWCONV, ISAS, dwconv_kernel, need, need_kernel, seed_of


def out_dim(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def in_dim(out, k, s, p, d):
    """Smallest input size with `out` outputs (at least 1)."""
    return max(1, (out - 1) * s + d * (k - 1) + 1 - 2 * p)


def reference(x, w, bias, stride, padding, dilation, residual, act):
    y = F.conv2d(x.double(), w.double(), None if bias is None else bias.double(), stride,
                 padding, dilation, groups=x.shape[1])
    if residual is not None:
        y = y + residual.double()
    if act == "relu":
        y = y.clamp_min(0)
    elif act == "relu6":
        y = y.clamp(0, 6)
    elif act in ("hardswish", "silu"):
        y = getattr(F, act)(y)
    return y


def assert_matches(y, ref, taps):
    assert y.dtype == np.float32
    assert y.shape == tuple(ref.shape), (y.shape, tuple(ref.shape))
    assert np.isfinite(y).all()
    # float32 accumulation of `taps` products: the error grows like sqrt(taps)
    atol = 2e-5 * max(1.0, taps ** 0.5) * max(1.0, float(ref.abs().max()) ** 0.5)
    torch.testing.assert_close(torch.from_numpy(y).double(), ref, rtol=1e-4, atol=atol)


# ------------------------------------------------------------------------------ the sweep

BASE = dict(c=5, h=11, w=13, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1), batch=1, act="none",
            residual=False, bias=True, wo=None, ho=None)

# (name, geometry) cycled through where a sweep varies something else
GEOMS = [
    ("3x3s1", dict(k=(3, 3), s=(1, 1), p=(1, 1))),
    ("3x3s2", dict(k=(3, 3), s=(2, 2), p=(1, 1))),
    ("5x5s1", dict(k=(5, 5), s=(1, 1), p=(2, 2))),
    ("5x5s2", dict(k=(5, 5), s=(2, 2), p=(2, 2))),
    ("3x5gen", dict(k=(3, 5), s=(1, 1), p=(1, 2))),
    ("7x7s3gen", dict(k=(7, 7), s=(3, 3), p=(3, 3))),
    ("3x3d2gen", dict(k=(3, 3), s=(1, 1), p=(2, 2), d=(2, 2))),
]

# output widths on and around every vector width (4 neon, 8 avx2, 16 avx512) and unrolled
# block (up to 4 vectors: 24 = 3 x 8 is avx2's two-row block of 3 vectors)
WIDTHS = (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47, 48, 49, 63, 64, 65,
          127, 128, 129)


def _cases():
    cases = {}

    def add(name, **over):
        assert name not in cases, name
        cases[name] = {**BASE, **over}

    # tiny images: 1x1, 2x3, 3x2 (padding makes them valid for every kernel)
    for i, ((h, w), (gname, g)) in enumerate(itertools.product(((1, 1), (2, 3), (3, 2), (1, 5)),
                                                                GEOMS)):
        add(f"tiny-{h}x{w}-{gname}", h=h, w=w, c=3, **g)
    # output widths at / around vector and block widths; output heights 1, 2, 3 (row pairs)
    for i, wo in enumerate(WIDTHS):
        for j in range(2):
            gname, g = GEOMS[(2 * i + j) % len(GEOMS)]
            add(f"width-wo{wo}-{gname}", wo=wo, ho=1 + (i + j) % 3, c=2, **g)
    # wide and tall: several row blocks per plane (blocks are sized to a 32 KiB L1 budget)
    for gname, g in GEOMS:
        add(f"wide-{gname}", h=23, w=733, c=2, **g)
        add(f"tall-{gname}", h=97, w=61, c=2, **g)
    # channels: 1 and odd counts
    for i, c in enumerate((1, 3, 7, 13)):
        gname, g = GEOMS[i % len(GEOMS)]
        add(f"chan-c{c}-{gname}", c=c, h=9, w=10, **g)
    # batch x activation x residual x bias, cycling through the geometries
    for i, (n, act, res, bias) in enumerate(itertools.product((1, 3), ACTS,
                                                              (False, True), (False, True))):
        gname, g = GEOMS[i % len(GEOMS)]
        add(f"epilogue-n{n}-{act}-{'res' if res else 'nores'}-{'bias' if bias else 'nobias'}"
            f"-{gname}", batch=n, act=act, residual=res, bias=bias, c=6, h=12, w=20, **g)
    return cases


CASES = _cases()

# the generic kernel's geometries: other kernels, strides, dilations, asymmetric everything
GENERIC_GEOMETRIES = [((1, 1), (1, 1), (0, 0), (1, 1)), ((1, 1), (2, 2), (0, 0), (1, 1)),
                      ((1, 1), (1, 1), (1, 1), (1, 1)), ((2, 2), (2, 2), (0, 0), (1, 1)),
                      ((3, 5), (1, 1), (1, 2), (1, 1)), ((5, 3), (2, 1), (2, 1), (1, 1)),
                      ((7, 7), (1, 1), (3, 3), (1, 1)), ((7, 7), (2, 2), (3, 3), (1, 1)),
                      ((3, 3), (3, 3), (1, 1), (1, 1)), ((5, 5), (3, 3), (0, 0), (1, 1)),
                      ((3, 3), (1, 1), (2, 2), (2, 2)), ((3, 3), (2, 2), (2, 2), (2, 2)),
                      ((5, 5), (1, 1), (4, 4), (2, 2)), ((3, 3), (1, 2), (1, 1), (1, 1)),
                      ((3, 3), (2, 1), (1, 1), (1, 1)), ((5, 5), (1, 2), (2, 2), (1, 1)),
                      ((3, 3), (1, 1), (0, 3), (1, 1)), ((3, 3), (1, 1), (1, 1), (1, 3)),
                      ((3, 1), (1, 1), (1, 0), (1, 1)), ((1, 7), (1, 1), (0, 3), (1, 1)),
                      ((3, 3), (4, 4), (1, 1), (1, 1)), ((2, 3), (1, 3), (0, 1), (2, 1)),
                      ((11, 11), (1, 1), (5, 5), (1, 1)), ((3, 3), (1, 1), (9, 9), (1, 1))]


def kernel_cases(kernel: str) -> dict:
    """name -> case of one listed kernel: a specialised k x k, stride s kernel at padding 0, 1,
    2 and larger than the kernel; the generic kernel over GENERIC_GEOMETRIES."""
    tile = BY_NAME[kernel]["tile"]
    if tile:
        k, s = tile["kernel"], tile["stride"]
        return {f"spec-k{k}s{s}p{p}": {**BASE, "k": (k, k), "s": (s, s), "p": (p, p), "h": 14,
                                       "w": 17} for p in (0, 1, 2, 7)}
    return {"gen-k{}x{}s{}x{}p{}x{}d{}x{}".format(*k, *s, *p, *d):
            {**BASE, "k": k, "s": s, "p": p, "d": d, "h": 16, "w": 19}
            for k, s, p, d in GENERIC_GEOMETRIES}


KERNEL_CASES = [(kernel, name) for kernel in DWCONV for name in kernel_cases(kernel)]


def make_layer(case, isa, name):
    """(DepthwiseConv, x, weight, bias, residual, the float64 reference) for a case."""
    gen = torch.Generator().manual_seed(seed_of(name))
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = case["k"], case["s"], case["p"], case["d"]
    h, w = case["h"], case["w"]
    if case["wo"] is not None:
        w = in_dim(case["wo"], kw, sw, pw, dw)
        h = in_dim(case["ho"], kh, sh, ph, dh)
    c, n = case["c"], case["batch"]
    weight = torch.randn(c, 1, kh, kw, generator=gen)
    bias = torch.randn(c, generator=gen) if case["bias"] else None
    x = torch.randn(n, c, h, w, generator=gen)
    ho, wo = out_dim(h, kh, sh, ph, dh), out_dim(w, kw, sw, pw, dw)
    residual = torch.randn(n, c, ho, wo, generator=gen) * 2 if case["residual"] else None
    conv = K.DepthwiseConv(c, (kh, kw), (sh, sw), (ph, pw), (dh, dw), weight.numpy(),
                           None if bias is None else bias.numpy(), case["act"], isa)
    ref = reference(x, weight, bias, (sh, sw), (ph, pw), (dh, dw), residual, case["act"])
    return conv, x, residual, ref


def check_case(isa, name, case):
    conv, x, residual, ref = make_layer(case, isa, name)
    if case["wo"] is not None:  # the geometry really gives the intended output size
        assert tuple(ref.shape[2:]) == (case["ho"], case["wo"])
    y = conv.run(x.numpy(), None if residual is None else residual.numpy())
    assert_matches(y, ref, case["k"][0] * case["k"][1])
    assert conv.kernel_name == dwconv_kernel(isa, case["k"], case["s"], case["d"])
    assert conv.output_size(x.shape[2], x.shape[3]) == tuple(ref.shape[2:])
    return conv


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("isa", ISAS)
def test_depthwise_matches_torch(isa, name):
    check_case(need(isa), name, CASES[name])


@pytest.mark.parametrize("kernel,name", KERNEL_CASES)
def test_listed_kernel_matches_torch(kernel, name):
    k = need_kernel(kernel)
    conv = check_case(k["isa"], name, kernel_cases(kernel)[name])
    if k["tile"]:  # its own geometry picks it (a generic case may fit a specialised kernel)
        assert conv.kernel_name == kernel


def test_sweep_size_is_reasonable():
    assert 100 <= len(CASES) <= 250
    assert {kernel for kernel, _ in KERNEL_CASES} == set(DWCONV)
    for isa in ISAS:  # every ISA has its generic kernel, named by the rule
        assert f"f32_dwconv_generic__{isa}" in DWCONV


@pytest.mark.parametrize("isa", ISAS)
def test_huge_dilated_span_copies_tap_rows_per_output_row(isa):
    """One output row spanning more than 8 MiB of row buffers (5 taps 64 rows apart on an 8200
    wide row) takes the per-row tap copy path (dwconv.h, DwGeom::block == 0)."""
    need(isa)
    gen = torch.Generator().manual_seed(17)
    c, k, d, p = 2, (5, 3), (64, 1), (128, 1)
    x = torch.randn(1, c, 3, 8200, generator=gen)
    w = torch.randn(c, 1, *k, generator=gen)
    b = torch.randn(c, generator=gen)
    conv = K.DepthwiseConv(c, k, (1, 1), p, d, w.numpy(), b.numpy(), "relu", isa)
    y = conv.run(x.numpy())
    assert y.shape == (1, c, 3, 8200)
    assert_matches(y, reference(x, w, b, 1, p, d, None, "relu"), 15)


@pytest.mark.parametrize("isa", ISAS)
def test_input_size_changes_between_calls(isa):
    """The row layout depends on the input width: a layer must serve any size in any order
    (row buffers are zeroed per run, so a narrower layout after a wider one stays correct)."""
    need(isa)
    gen = torch.Generator().manual_seed(11)
    for k, s in [(3, 1), (3, 2), (5, 2), (7, 3)]:
        w = torch.randn(4, 1, k, k, generator=gen)
        conv = K.DepthwiseConv(4, (k, k), (s, s), (k // 2, k // 2), (1, 1), w.numpy(), None,
                               "none", isa)
        for h, wd in [(40, 300), (7, 5), (40, 300), (31, 9), (3, 3), (1, 1)]:
            x = torch.randn(2, 4, h, wd, generator=gen)
            assert_matches(conv.run(x.numpy()), reference(x, w, None, s, k // 2, 1, None, "none"),
                           k * k)


@pytest.mark.parametrize("isa", ISAS)
def test_auto_and_named_isas_agree_with_names(isa):
    need(isa)
    w = np.ones((3, 1, 3, 3), np.float32)
    named = K.DepthwiseConv(3, (3, 3), (1, 1), (1, 1), (1, 1), w, None, "none", isa)
    assert named.kernel_name == dwconv_kernel(isa, (3, 3), (1, 1), (1, 1))
    auto = K.DepthwiseConv(3, (3, 3), (2, 2), (1, 1), (1, 1), w, None, "none", "auto")
    assert auto.kernel_name == dwconv_kernel(K.best_isa(), (3, 3), (2, 2), (1, 1))


@pytest.mark.parametrize("isa", ISAS)
def test_weight_as_c_kh_kw_is_the_same_layer(isa):
    need(isa)
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(5, 1, 3, 5, generator=gen)
    x = torch.randn(1, 5, 9, 11, generator=gen).numpy()
    a = K.DepthwiseConv(5, (3, 5), (1, 1), (1, 2), (1, 1), w.numpy(), None, "none", isa)
    b = K.DepthwiseConv(5, (3, 5), (1, 1), (1, 2), (1, 1), w.numpy()[:, 0], None, "none", isa)
    assert np.array_equal(a.run(x), b.run(x))


# ------------------------------------------------------------------------------ threads

def _thread_layers(gen):
    """Layers across the parallel splits: many planes (one work item each), few planes (each
    plane's rows split into blocks, one per work item), specialised and generic kernels."""
    out = []
    for c, n, h, w, k, s, d in [(24, 2, 29, 31, 3, 1, 1), (16, 1, 40, 37, 3, 2, 1),
                                (1, 1, 53, 41, 3, 1, 1), (3, 1, 64, 70, 5, 2, 1),
                                (2, 1, 45, 33, 3, 1, 2), (5, 1, 30, 30, 7, 3, 1)]:
        p = d * (k // 2)
        weight = torch.randn(c, 1, k, k, generator=gen)
        bias = torch.randn(c, generator=gen)
        x = torch.randn(n, c, h, w, generator=gen)
        res = torch.randn(n, c, out_dim(h, k, s, p, d), out_dim(w, k, s, p, d), generator=gen)
        out.append((weight, bias, x, res, k, s, p, d))
    return out


@pytest.mark.parametrize("isa", ISAS)
def test_thread_counts_give_identical_results(isa, restore_threads):
    need(isa)
    gen = torch.Generator().manual_seed(3)
    for weight, bias, x, res, k, s, p, d in _thread_layers(gen):
        conv = K.DepthwiseConv(weight.shape[0], (k, k), (s, s), (p, p), (d, d), weight.numpy(),
                               bias.numpy(), "relu6", isa)
        outs = []
        for n in (1, 2, 3):
            K.set_num_threads(n)
            outs.append(conv.run(x.numpy(), res.numpy()))
        assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
        assert_matches(outs[0], reference(x, weight, bias, s, p, d, res, "relu6"), k * k)


THREAD_STRESS = textwrap.dedent("""
    # One layer run from two Python threads while the kernel thread count changes.
    import threading
    import numpy as np
    from engine import _kernels as K
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    conv = K.DepthwiseConv(6, (3, 3), (2, 2), (1, 1), (1, 1), w, None, "relu", "auto")
    x = rng.standard_normal((1, 6, 33, 35)).astype(np.float32)
    first = conv.run(x)
    stop = False
    bad = []
    def runner():
        while not stop:
            if not np.array_equal(conv.run(x), first):
                bad.append(1)
    ts = [threading.Thread(target=runner) for _ in range(2)]
    for t in ts:
        t.start()
    for i in range(200):
        K.set_num_threads(1 + i % 2)
    stop = True
    for t in ts:
        t.join()
    print("ok" if not bad else "mismatch")
""")


def test_concurrent_calls_while_thread_count_changes():
    proc = subprocess.run([sys.executable, "-c", THREAD_STRESS], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"


# ------------------------------------------------------------------------------ bad input

def _layer(c=4, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1), weight=None, bias=None, act="none",
           isa="scalar"):
    w = np.ones((c, 1, *k), np.float32) if weight is None else weight
    return K.DepthwiseConv(c, k, s, p, d, w, bias, act, isa)


BAD_BUILDS = {
    "weight channels mismatch": (dict(weight=np.ones((5, 1, 3, 3), np.float32)),
                                 r"weight must be \(4, 1, 3, 3\) or \(4, 3, 3\) float32, got "
                                 r"shape \(5, 1, 3, 3\)"),
    "weight kernel mismatch": (dict(weight=np.ones((4, 1, 3, 5), np.float32)),
                               r"got shape \(4, 1, 3, 5\)"),
    "weight not a depthwise weight": (dict(weight=np.ones((4, 2, 3, 3), np.float32)),
                                      r"got shape \(4, 2, 3, 3\)"),
    "bias wrong size": (dict(bias=np.ones(3, np.float32)), r"bias must have channels \(4\)"),
    "zero channels": (dict(c=0, weight=np.ones((0, 1, 3, 3), np.float32)),
                      "invalid conv params"),
    "zero stride": (dict(s=(0, 1)), "invalid conv params"),
    "negative padding": (dict(p=(1, -1)), "invalid conv params"),
    "zero dilation": (dict(d=(0, 1)), "invalid conv params"),
    "kernel above 64": (dict(k=(65, 1)), "kernel size or dilation too large"),
    "dilation above 64": (dict(d=(1, 65)), "kernel size or dilation too large"),
    "stride above 64": (dict(s=(65, 1)), "stride too large"),
    "padding above 65536": (dict(p=(65537, 0)), "padding too large"),
    "unknown activation": (dict(act="mish"), "unknown activation 'mish'"),
    "unknown isa": (dict(isa="sse9000"), "ISA not available.*sse9000"),
}


@pytest.mark.parametrize("case", list(BAD_BUILDS))
def test_bad_construction_raises_value_error(case):
    kw, msg = BAD_BUILDS[case]
    with pytest.raises(ValueError, match=msg):
        _layer(**kw)


def test_isa_the_cpu_lacks_raises_value_error():
    missing = [i for i in ISAS if not K.isa_available(i)]
    if not missing:
        pytest.skip("every ISA is available here")
    for isa in missing:
        with pytest.raises(ValueError, match=f"ISA not available.*{isa}"):
            _layer(isa=isa)


def test_bad_run_inputs_raise_value_error():
    conv = _layer(c=3, k=(3, 3), p=(0, 0))
    ok = np.ones((1, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"x must be \(N, 3, H, W\)"):
        conv.run(np.ones((1, 4, 5, 5), np.float32))           # channels mismatch
    with pytest.raises(ValueError, match=r"x must be \(N, 3, H, W\)"):
        conv.run(np.ones((3, 5, 5), np.float32))              # not 4-D
    with pytest.raises(ValueError, match="input 2x5 too small for the kernel/padding"):
        conv.run(np.ones((1, 3, 2, 5), np.float32))           # smaller than the kernel
    with pytest.raises(ValueError, match="x must be float32, got float64"):
        conv.run(ok.astype(np.float64))
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        conv.run(np.ones((1, 3, 5, 10), np.float32)[..., ::2])
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        conv.run(np.asfortranarray(np.ones((2, 3, 5, 5), np.float32)))
    with pytest.raises(ValueError, match="residual must have the output's shape"):
        conv.run(ok, np.ones((1, 3, 3, 4), np.float32))
    with pytest.raises(ValueError, match="residual must be float32, got float16"):
        conv.run(ok, np.ones((1, 3, 3, 3), np.float16))
    with pytest.raises(ValueError, match="residual must be C-contiguous"):
        conv.run(ok, np.ones((1, 3, 3, 6), np.float32)[..., ::2])
    # still usable afterwards: all ones, 3x3 ones weights, no padding -> 9 everywhere
    y = conv.run(ok)
    assert y.shape == (1, 3, 3, 3) and np.all(y == 9.0)


def test_zero_batch_gives_empty_output():
    conv = _layer(c=3)
    assert conv.run(np.ones((0, 3, 5, 5), np.float32)).shape == (0, 3, 5, 5)


FUZZ = textwrap.dedent("""
    # Garbage into the bindings: every call must return or raise ValueError / TypeError,
    # never take the interpreter down.
    import numpy as np
    from engine import _kernels as K
    rng = np.random.default_rng(0)
    ok = 0
    for i in range(3000):
        c = int(rng.integers(-1, 5))
        k = tuple(int(v) for v in rng.integers(0, 5, 2))
        s = tuple(int(v) for v in rng.integers(0, 5, 2))
        p = tuple(int(v) for v in rng.integers(-1, 6, 2))
        d = tuple(int(v) for v in rng.integers(0, 4, 2))
        wshape = tuple(int(v) for v in rng.integers(0, 5, int(rng.integers(1, 5))))
        try:
            conv = K.DepthwiseConv(c, k, s, p, d, rng.standard_normal(wshape).astype(np.float32),
                                   None if i % 2 else np.ones(max(c, 0), np.float32),
                                   "relu6" if i % 3 else "none", "auto")
        except (ValueError, TypeError):
            continue
        ok += 1
        for _ in range(3):
            shp = tuple(int(v) for v in rng.integers(0, 9, 4))
            try:
                conv.run(rng.standard_normal(shp).astype(np.float32))
            except (ValueError, TypeError):
                pass
    print("ok", ok)
""")


def test_fuzzed_arguments_never_crash():
    proc = subprocess.run([sys.executable, "-c", FUZZ], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    m = re.fullmatch(r"ok (\d+)\s*", proc.stdout)
    assert m and int(m.group(1)) > 0, proc.stdout  # some layers were valid and ran
