"""Tests of the f32 SpMM conv / linear kernels (engine._kernels) against torch.

Every ISA variant this CPU can run, and every f32_spmm kernel the library lists
(engine._kernels.list_kernels(): kernels/src/spmm/spmm_list.h), is checked against an
independent reference: float64 F.conv2d on the masked weight, plus bias, residual and
activation. Variants the CPU (or build) cannot run are skipped at run time, never left out of the
list. The sweep varies dimensions in pairs around a base case instead of taking the full
cartesian product; per listed kernel, pixel counts land exactly on, one below and one above
multiples of its tile width, and the layer must pick that kernel. Data are seeded from the case
name, so every ISA sees the same numbers.
"""
from __future__ import annotations

import functools
import itertools
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine import _kernels as K
from engine.runtime.modules import SparseConv2d, SparseLinear
from engine.runtime.packing import pack

from kernel_catalog import ACTS, BY_NAME, ISAS, SPMM, need, need_kernel, seed_of


# ------------------------------------------------------------------------------ reference

def masked_weight(o, c, kh, kw, rows, sparsity, kind, gen):
    """Random (O, C, kh, kw) weight with exactly round(sparsity * units) units zeroed.

    kind "block": rows x 1 blocks over (O, C*kh*kw) (one kernel column of a row group);
    "channel": rows x 1 blocks over (O, C), all kernel taps of the channel together;
    "unstructured": single weights.
    """
    w = torch.randn(o, c, kh, kw, generator=gen, dtype=torch.float64).float()
    w[w == 0] = 1.0  # a kept weight must be non-zero for the nnz checks
    ncol = c if kind == "channel" else c * kh * kw
    nr, br = (o, 1) if kind == "unstructured" else (-(-o // rows), rows)
    units = nr * ncol
    keep = torch.ones(units, dtype=torch.bool)
    keep[torch.randperm(units, generator=gen)[:round(sparsity * units)]] = False
    keep = keep.reshape(nr, ncol).repeat_interleave(br, 0)[:o]
    if kind == "channel":
        keep = keep[:, :, None].expand(o, c, kh * kw)
    mask = keep.reshape(o, c, kh, kw)
    return w * mask, mask


def reference(x, w, bias, stride, padding, dilation, residual, act):
    y = F.conv2d(x.double(), w.double(), None if bias is None else bias.double(),
                 stride, padding, dilation)
    if residual is not None:
        y = y + residual.double()
    if act == "relu":
        y = y.clamp_min(0)
    elif act == "relu6":
        y = y.clamp(0, 6)
    elif act in ("hardswish", "silu"):
        y = getattr(F, act)(y)
    return y


def assert_matches(y, ref, ncols):
    assert y.dtype == torch.float32
    assert y.shape == ref.shape, (y.shape, ref.shape)
    assert torch.isfinite(y).all()
    # float32 accumulation over ncols products of N(0,1) terms: error grows like sqrt(ncols)
    atol = 2e-5 * max(1.0, ncols ** 0.5) * max(1.0, float(ref.abs().max()) ** 0.5)
    torch.testing.assert_close(y.double(), ref, rtol=1e-4, atol=atol)


# ------------------------------------------------------------------------------ tile widths

@functools.lru_cache(maxsize=None)
def tile_width(isa: str, rows: int) -> int:
    """Full-tile pixel count of the isa's kernel for row groups of `rows`, from its name."""
    p = pack(np.ones((rows, 1), np.float32), rows)
    conv = K.SparseConv(rows, 1, (1, 1), (1, 1), (0, 0), (1, 1), p.group_row0, p.group_rows,
                        p.group_ptr, p.entry_col, p.values, None, "none", isa)
    m = re.fullmatch(rf"f32_spmm_{rows}x(\d+)__{isa}", conv.kernel_name)
    assert m, conv.kernel_name
    return int(m.group(1))


def spatial_for(pixels, k, s, p, d):
    """(H, W) whose virtual pixel count Ho * Wp equals `pixels` (Wp = Wo + d*(kw-1)//s, the
    row pitch of the phase planes), preferring a square-ish output; None if impossible."""
    extra = (d * (k - 1)) // s
    best = None
    for ho in range(1, pixels + 1):
        if pixels % ho:
            continue
        wo = pixels // ho - extra
        if wo < 1:
            continue
        h = (ho - 1) * s + d * (k - 1) + 1 - 2 * p
        w = (wo - 1) * s + d * (k - 1) + 1 - 2 * p
        if h < 1 or w < 1:
            continue
        score = abs(ho - wo)
        if best is None or score < best[0]:
            best = (score, h, w)
    return None if best is None else best[1:]


# ------------------------------------------------------------------------------ the sweep

BASE = dict(o=8, c=3, h=9, w=11, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1), rows=4,
            sparsity=0.5, mask="block", batch=1, act="none", residual=False, bias=True,
            pixels=None)

# (name, geometry overrides) used where a sweep cycles through conv kinds
GEOMETRIES = [
    ("1x1", dict(k=(1, 1), s=(1, 1), p=(0, 0))),           # direct NCHW read, no planes
    ("3x3s1", dict(k=(3, 3), s=(1, 1), p=(1, 1))),         # planes + crop
    ("1x1s2", dict(k=(1, 1), s=(2, 2), p=(0, 0))),         # planes, no crop
    ("3x3s2", dict(k=(3, 3), s=(2, 2), p=(1, 1))),
    ("5x5d2", dict(k=(5, 5), s=(1, 1), p=(2, 2), d=(2, 2))),
    ("7x7s2", dict(k=(7, 7), s=(2, 2), p=(3, 3))),
]


def _cases():
    cases = {}

    def add(name, **over):
        assert name not in cases, name
        cases[name] = {**BASE, **over}

    # kernel x stride x padding (dilation 1); 15x17 fits a 7x7 kernel without padding
    for k, s, p in itertools.product((1, 3, 5, 7), (1, 2), (0, 1, 2, 3)):
        add(f"geom-k{k}s{s}p{p}", k=(k, k), s=(s, s), p=(p, p), h=15, w=17)
    # kernel x dilation (stride and padding cycling)
    for i, (k, d) in enumerate(itertools.product((1, 3, 5, 7), (1, 2))):
        s, p = (1, 2)[i % 2], (0, 1, 2, 3)[i % 4]
        add(f"dil-k{k}d{d}s{s}p{p}", k=(k, k), s=(s, s), p=(p, p), d=(d, d), h=16, w=15)
    # asymmetric kernels, strides, padding, dilation
    for k, s, p, d in [((1, 3), (1, 2), (0, 1), (1, 1)), ((3, 1), (2, 1), (1, 0), (1, 1)),
                       ((3, 5), (1, 1), (1, 2), (2, 1)), ((5, 3), (2, 2), (0, 1), (1, 2)),
                       ((1, 7), (1, 1), (0, 3), (1, 1)), ((2, 2), (2, 2), (0, 0), (1, 1))]:
        add("asym-k{}x{}s{}x{}p{}x{}d{}x{}".format(*k, *s, *p, *d), k=k, s=s, p=p, d=d,
            h=13, w=14)
    # output channels around group boundaries x block rows (1x1 and 3x3 alternating)
    for i, (o, r) in enumerate(itertools.product((1, 3, 4, 5, 7, 8, 9, 13, 16, 17),
                                                 (1, 2, 4, 8, 16))):
        g = GEOMETRIES[i % 2][1]
        add(f"rows-o{o}r{r}", o=o, rows=r, h=6, w=7, **g)
    # odd input channels x kernel size
    for i, (c, k) in enumerate(itertools.product((1, 3, 7), (1, 3, 5, 7))):
        s = (1, 2)[i % 2]
        add(f"chan-c{c}k{k}s{s}", c=c, k=(k, k), s=(s, s), p=(k // 2, k // 2), h=10, w=9)
    # sparsity x mask kind
    for i, (sp, kind) in enumerate(itertools.product((0.0, 0.5, 0.9, 1.0),
                                                     ("block", "channel", "unstructured"))):
        gname, g = GEOMETRIES[i % len(GEOMETRIES)]
        add(f"sparsity-{sp}-{kind}-{gname}", sparsity=sp, mask=kind, o=13, c=5, h=12, w=13,
            **{**dict(d=(1, 1)), **g})
    # batch x activation x residual x bias, cycling through the three execution paths
    for i, (n, act, res, bias) in enumerate(itertools.product((1, 3), ACTS,
                                                              (False, True), (False, True))):
        gname, g = GEOMETRIES[i % 3]
        add(f"epilogue-n{n}-{act}-{'res' if res else 'nores'}-{'bias' if bias else 'nobias'}"
            f"-{gname}", batch=n, act=act, residual=res, bias=bias, o=9, h=10, w=12, **g)
    return cases


CASES = _cases()

# Virtual pixels on / one below / one above a multiple of a listed kernel's tile width, through
# the execution paths: (off, j) -> O = rows (one group), 2*rows (two), 2*rows+1 (plus a 1-row
# remainder group with its own tile), mult 1 or 2.
TILE_CASES = list(itertools.product((-1, 0, 1), range(2)))


def tile_case(kernel: dict, off: int, j: int) -> tuple[str, dict]:
    """The (name, case) of one tile-boundary case of a listed f32_spmm kernel."""
    r = kernel["tile"]["rows"]
    o = {-1: r, 0: 2 * r, 1: 2 * r + 1}[off]
    gname, g = GEOMETRIES[(2 * r + j + off) % len(GEOMETRIES)] if j else GEOMETRIES[0]
    mult = 1 + (r + off + j) % 2
    name = f"tile-r{r}{'%+d' % off}x{mult}-{gname}"
    return name, {**BASE, "o": o, "rows": r, "c": 2, "pixels": (mult, off), "d": (1, 1), **g}


def run_case(isa: str, name: str, case: dict, kernel: dict | None = None):
    """Runs one case on isa against torch; a tile case runs on the listed `kernel`'s tile and
    checks that the layer picks that kernel."""
    gen = torch.Generator().manual_seed(seed_of(name))
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = case["k"], case["s"], case["p"], case["d"]
    h, w = case["h"], case["w"]
    if case["pixels"] is not None:
        mult, off = case["pixels"]
        assert kh == kw and sh == sw and ph == pw and dh == dw
        tile = kernel["tile"]["pixels"]
        while spatial_for(mult * tile + off, kh, sh, ph, dh) is None:
            mult += 1  # a narrow tile cannot hold a wide kernel's row pitch: next multiple
            assert mult < 64
        target = mult * tile + off
        h, w = spatial_for(target, kh, sh, ph, dh)
    o, c = case["o"], case["c"]
    weight, mask = masked_weight(o, c, kh, kw, case["rows"], case["sparsity"], case["mask"], gen)
    bias = torch.randn(o, generator=gen) if case["bias"] else None
    x = torch.randn(case["batch"], c, h, w, generator=gen)
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    residual = torch.randn(case["batch"], o, ho, wo, generator=gen) if case["residual"] else None

    mod = SparseConv2d(weight, bias, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw),
                       act=case["act"], rows=case["rows"], isa=isa)
    y = mod(x, residual)
    ref = reference(x, weight, bias, (sh, sw), (ph, pw), (dh, dw), residual, case["act"])
    assert_matches(y, ref, c * kh * kw)
    assert mod.kernel_name.endswith("__" + isa)
    if kernel is not None:
        assert mod.kernel_name == kernel["name"]
    if case["pixels"] is not None:  # the geometry really hit the intended virtual pixel count
        wp = wo + (dw * (kw - 1)) // sw
        assert ho * wp == target
    nnz = int(mask.sum())
    if case["mask"] == "unstructured":
        assert nnz <= mod.kernel.nnz <= o * c * kh * kw
    else:  # row groups never straddle mask blocks: the pack stores exactly the kept weights
        assert mod.kernel.nnz == nnz
    return y, ref


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("isa", ISAS)
def test_conv_matches_torch(isa, name):
    run_case(need(isa), name, CASES[name])


@pytest.mark.parametrize("off,j", TILE_CASES)
@pytest.mark.parametrize("kernel", SPMM)
def test_tile_boundaries_match_torch(kernel, off, j):
    k = need_kernel(kernel)
    name, case = tile_case(k, off, j)
    run_case(k["isa"], name, case, k)


def test_sweep_size_is_reasonable():
    assert 100 <= len(CASES) <= 250
    assert len(SPMM) * len(TILE_CASES) >= 150


@pytest.mark.parametrize("isa", ISAS)
def test_all_zero_weight_gives_bias_and_activation(isa):
    need(isa)
    gen = torch.Generator().manual_seed(7)
    for act in ACTS:
        bias = torch.randn(6, generator=gen) * 5
        x = torch.randn(2, 4, 7, 9, generator=gen)
        res = torch.randn(2, 6, 7, 9, generator=gen)
        mod = SparseConv2d(torch.zeros(6, 4, 3, 3), bias, padding=(1, 1), act=act, rows=4, isa=isa)
        assert mod.kernel.nnz == 0
        y = mod(x, res)
        ref = reference(x, torch.zeros(6, 4, 3, 3), bias, 1, 1, 1, res, act)
        torch.testing.assert_close(y.double(), ref, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------ tiles / names

@pytest.mark.parametrize("kernel", SPMM)
def test_a_layer_of_the_listed_rows_picks_the_listed_kernel(kernel):
    k = need_kernel(kernel)
    rows, pixels, isa = k["tile"]["rows"], k["tile"]["pixels"], k["isa"]
    assert kernel == f"f32_spmm_{rows}x{pixels}__{isa}"  # the naming rule: tile, "__", ISA
    assert tile_width(isa, rows) == pixels


def test_readme_tile_table_is_the_list():
    """kernels/README.md's tile table shows what spmm_list.h lists."""
    readme = (Path(__file__).resolve().parents[2] / "kernels" / "README.md").read_text()
    table = {isa: tiles.split() for isa, tiles in
             re.findall(r"^\| (\w+) \| \d+ f32 \| ([\d: ]+) \|$", readme, re.M)}
    listed = {isa: [f"{BY_NAME[n]['tile']['rows']}:{BY_NAME[n]['tile']['pixels']}"
                    for n in SPMM if BY_NAME[n]["isa"] == isa] for isa in ISAS}
    assert table == listed


@pytest.mark.parametrize("isa", ISAS)
def test_every_isa_lists_one_kernel_per_group_height(isa):
    rows = sorted(BY_NAME[n]["tile"]["rows"] for n in SPMM if BY_NAME[n]["isa"] == isa)
    assert rows == list(range(1, 9))


def test_available_isas_are_consistent():
    avail = K.available_isas()
    assert "scalar" in avail
    assert K.best_isa() in avail
    for isa in ISAS:
        assert K.isa_available(isa) == (isa in avail)
    assert not K.isa_available("sse9000")


@pytest.mark.parametrize("isa", ISAS)
def test_auto_picks_best_isa(isa):
    need(isa)
    mod = SparseConv2d(torch.randn(4, 3, 1, 1), None, rows=4, isa="auto")
    assert mod.kernel_name.endswith("__" + K.best_isa())


# ------------------------------------------------------------------------------ state & threads

@pytest.mark.parametrize("isa", ISAS)
def test_input_size_changes_between_calls(isa):
    """Geometry and buffers are cached per input size; a new size must rebuild them."""
    need(isa)
    gen = torch.Generator().manual_seed(11)
    w, _ = masked_weight(10, 5, 3, 3, 2, 0.5, "unstructured", gen)
    mod = SparseConv2d(w, None, stride=(2, 2), padding=(1, 1), rows=2, isa=isa)
    for h, wd in [(20, 23), (7, 5), (20, 23), (31, 9), (3, 3)]:
        x = torch.randn(2, 5, h, wd, generator=gen)
        assert_matches(mod(x), reference(x, w, None, 2, 1, 1, None, "none"), 45)


def _thread_layers(gen):
    """A few layers big enough for the pool to split work (1x1 direct, 3x3 crop, strided), and
    a 1x1 projection (more input than output channels), whose large image the threads split
    by pixels (uneven runs of whole vectors at 3 threads)."""
    layers = []
    for o, i, k, s, p in [(48, 16, 1, 1, 0), (48, 16, 3, 1, 1), (48, 16, 3, 2, 1), (16, 96, 1, 1, 0)]:
        w, _ = masked_weight(o, i, k, k, 4, 0.6, "block", gen)
        b = torch.randn(o, generator=gen)
        x = torch.randn(2, i, 29, 31, generator=gen)
        layers.append((w, b, s, p, x))
    return layers


@pytest.mark.parametrize("isa", ISAS)
def test_thread_counts_give_identical_results(isa, restore_threads):
    need(isa)
    gen = torch.Generator().manual_seed(3)
    for w, b, s, p, x in _thread_layers(gen):
        mod = SparseConv2d(w, b, stride=(s, s), padding=(p, p), act="relu", rows=4, isa=isa)
        outs = []
        for n in (1, 2, 3):
            K.set_num_threads(n)
            assert K.get_num_threads() == n
            outs.append(mod(x))
        assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
        assert_matches(outs[0], reference(x, w, b, s, p, 1, None, "relu"), w[0].numel())


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("o,c,rows,act", [(16, 96, 8, "relu6"), (13, 64, 4, "none"), (24, 200, 1, "relu")])
def test_projection_k_stages_match_one_thread_bit_for_bit(isa, o, c, rows, act, restore_threads):
    """A 1x1 projection (input channels >= 2x the output's): on 2-3 threads its entries run in K
    stages, one run of input channels per thread, partial sums handed on tile by tile; the
    result must be the one-thread result bit for bit (bias, residual, activation in the last
    stage only), and the reference's. Odd sizes: short last group, masked tile, batch 2."""
    need(isa)
    gen = torch.Generator().manual_seed(11)
    w, _ = masked_weight(o, c, 1, 1, rows, 0.7, "block", gen)
    b = torch.randn(o, generator=gen)
    mod = SparseConv2d(w, b, act=act, rows=rows, isa=isa)
    for h, wd in [(23, 29), (7, 9)]:
        x = torch.randn(2, c, h, wd, generator=gen)
        res = torch.randn(2, o, h, wd, generator=gen)
        outs = []
        for n in (1, 2, 3):
            K.set_num_threads(n)
            outs.append(mod(x, res))
        assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
        assert_matches(outs[0], reference(x, w, b, 1, 0, 1, res, act), c)


def test_set_num_threads_clamps_to_one(restore_threads):
    for n in (0, -3):
        K.set_num_threads(n)
        assert K.get_num_threads() == 1


def test_concurrent_python_threads_share_a_layer():
    """One layer called from several Python threads (the GIL is released in run)."""
    gen = torch.Generator().manual_seed(5)
    w, _ = masked_weight(32, 8, 3, 3, 4, 0.5, "block", gen)
    mod = SparseConv2d(w, None, padding=(1, 1), rows=4)
    xs = [torch.randn(1, 8, 17 + i, 19, generator=gen) for i in range(4)]
    refs = [mod(x) for x in xs]
    errors = []

    def worker(i):
        try:
            for _ in range(20):
                if not torch.equal(mod(xs[i]), refs[i]):
                    errors.append(i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "worker threads hung"
    assert errors == []


STRESS = textwrap.dedent("""
    import threading
    import numpy as np
    from engine import _kernels as K
    from engine.runtime.packing import pack
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    w[rng.random(w.shape) < 0.5] = 0
    p = pack(w, 4)
    conv = K.SparseConv(16, 8, (3, 3), (1, 1), (1, 1), (1, 1), p.group_row0, p.group_rows,
                        p.group_ptr, p.entry_col, p.values, None, "relu", "auto")
    x = rng.standard_normal((1, 8, 12, 12)).astype(np.float32)
    first = conv.run(x)
    for i in range(200):
        K.set_num_threads(1 + i % 2)
        assert np.array_equal(conv.run(x), first), i
    # the same while other Python threads run layers
    stop = False
    def runner():
        while not stop:
            assert np.array_equal(conv.run(x), first)
    ts = [threading.Thread(target=runner) for _ in range(2)]
    for t in ts:
        t.start()
    for i in range(200):
        K.set_num_threads(1 + i % 2)
    stop = True
    for t in ts:
        t.join()
    print("ok")
""")


def test_thread_switching_stress_never_hangs():
    proc = subprocess.run([sys.executable, "-c", STRESS], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"


# ------------------------------------------------------------------------------ linear

@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("isa", ISAS)
def test_linear_matches_torch(isa, batch):
    need(isa)
    gen = torch.Generator().manual_seed(batch)
    for o, c, rows, act in [(19, 37, 4, "none"), (64, 33, 8, "relu"), (5, 130, 16, "relu6"),
                            (12, 20, 4, "hardswish"), (7, 9, 8, "silu")]:
        w, _ = masked_weight(o, c, 1, 1, rows, 0.7, "block", gen)
        w = w[:, :, 0, 0]
        b = torch.randn(o, generator=gen)
        x = torch.randn(batch, c, generator=gen)
        lin = SparseLinear(w, b, act=act, rows=rows, isa=isa)
        assert lin.kernel_name.endswith("__" + isa)
        y = lin(x)
        assert_matches(y, _act(F.linear(x.double(), w.double(), b.double()), act), c)
        x3 = torch.randn(2, batch, c, generator=gen)  # leading dims are flattened into rows
        assert_matches(lin(x3), _act(F.linear(x3.double(), w.double(), b.double()), act), c)


def _act(y, act):
    return {"none": y, "relu": y.clamp_min(0), "relu6": y.clamp(0, 6), "hardswish": F.hardswish(y),
            "silu": F.silu(y)}[act]


# ------------------------------------------------------------------------------ packing

@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8, 12, 16])
@pytest.mark.parametrize("kind", ["block", "channel", "unstructured"])
def test_dense_weight_round_trip(rows, kind):
    gen = torch.Generator().manual_seed(seed_of(f"{rows}{kind}"))
    for o, c, k in [(1, 1, 1), (13, 3, 3), (17, 7, 5), (16, 4, 1)]:
        for sp in (0.0, 0.5, 0.9, 1.0):
            w, mask = masked_weight(o, c, k, k, rows, sp, kind, gen)
            mod = SparseConv2d(w, None, padding=(k // 2, k // 2), rows=rows, isa="scalar")
            dw = mod.dense_weight()
            assert dw.shape == w.shape
            assert torch.equal(dw, w)
            assert torch.equal(dw != 0, mask)


def test_linear_dense_equivalent_round_trip():
    gen = torch.Generator().manual_seed(1)
    w, _ = masked_weight(21, 10, 1, 1, 4, 0.5, "unstructured", gen)
    w = w[:, :, 0, 0]
    lin = SparseLinear(w, None, rows=4)
    assert torch.equal(lin.dense_equivalent().weight.data, w)


# ------------------------------------------------------------------------------ bad input

def _raw(o=4, c=3, k=(1, 1), rows=None, cols=None, vals=None, ptr=None, row0=None, bias=None,
         act="none", isa="scalar", stride=(1, 1), pad=(0, 0), dil=(1, 1)):
    """A valid dense raw SparseConv unless a keyword overrides a piece of it."""
    p = pack(np.ones((o, c, *k), np.float32), 4)
    return K.SparseConv(o, c, k, stride, pad, dil,
                        p.group_row0 if row0 is None else row0,
                        p.group_rows if rows is None else rows,
                        p.group_ptr if ptr is None else ptr,
                        p.entry_col if cols is None else cols,
                        p.values if vals is None else vals, bias, act, isa)


BAD_BUILDS = {
    "group arrays disagree": (dict(rows=np.array([4, 4], np.int32)), "sizes disagree"),
    "ptr too short": (dict(ptr=np.array([0], np.int64)), "sizes disagree"),
    "entry_col too long": (dict(cols=np.arange(4, dtype=np.int32)), "entry_col has 4"),
    "values too short": (dict(vals=np.ones(5, np.float32)), "values has 5"),
    "bias wrong size": (dict(bias=np.ones(3, np.float32)), "bias must have out_channels"),
    "column out of range": (dict(cols=np.array([0, 1, 3], np.int32)),
                            r"entry column 3 out of range \[0, 3\)"),
    "negative column": (dict(cols=np.array([0, -1, 2], np.int32)),
                        r"entry column -1 out of range"),
    "group rows > 8": (dict(o=9, row0=np.array([0], np.int32), rows=np.array([9], np.int32),
                            ptr=np.array([0, 3], np.int64), cols=np.arange(3, dtype=np.int32),
                            vals=np.ones(27, np.float32)),
                       "group 0 out of range"),
    "row covered twice": (dict(o=4, row0=np.array([0, 0], np.int32),
                               rows=np.array([4, 4], np.int32),
                               ptr=np.array([0, 3, 6], np.int64),
                               cols=np.array([0, 1, 2, 0, 1, 2], np.int32),
                               vals=np.ones(24, np.float32)), "covered by 2 groups"),
    "ptr not monotone": (dict(row0=np.array([0, 2], np.int32), rows=np.array([2, 2], np.int32),
                              ptr=np.array([0, 3, 2], np.int64), cols=np.zeros(2, np.int32),
                              vals=np.ones(2, np.float32)), "values has|ptr monotone"),
    "unknown activation": (dict(act="mish"), "unknown activation 'mish'"),
    "unknown isa": (dict(isa="sse9000"), "ISA not available.*sse9000"),
    "zero stride": (dict(stride=(0, 1)), "invalid conv params"),
    "negative padding": (dict(pad=(-1, 0)), "invalid conv params"),
    "zero dilation": (dict(dil=(1, 0)), "invalid conv params"),
    "stride above 8x8": (dict(stride=(9, 8)), "stride too large"),
}


@pytest.mark.parametrize("case", list(BAD_BUILDS))
def test_bad_construction_raises_value_error(case):
    kw, msg = BAD_BUILDS[case]
    with pytest.raises(ValueError, match=msg):
        _raw(**kw)


def test_isa_the_cpu_lacks_raises_value_error():
    missing = [i for i in ISAS if not K.isa_available(i)]
    if not missing:
        pytest.skip("every ISA is available here")
    for isa in missing:
        with pytest.raises(ValueError, match=f"ISA not available.*{isa}"):
            _raw(isa=isa)


def test_module_rejects_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        SparseConv2d(torch.ones(4, 3, 1, 1), None, act="gelu")


def test_bad_run_inputs_raise_value_error():
    conv = _raw(k=(3, 3), o=4, c=3)
    with pytest.raises(ValueError, match=r"x must be \(N, 3, H, W\)"):
        conv.run(np.ones((1, 4, 5, 5), np.float32))          # wrong input channels
    with pytest.raises(ValueError, match=r"x must be \(N, 3, H, W\)"):
        conv.run(np.ones((3, 5, 5), np.float32))             # not 4-D
    with pytest.raises(ValueError, match="too small"):
        conv.run(np.ones((1, 3, 2, 5), np.float32))          # smaller than the kernel
    with pytest.raises(ValueError, match="residual must have the output's shape"):
        conv.run(np.ones((1, 3, 5, 5), np.float32), np.ones((1, 4, 3, 4), np.float32))
    # still usable afterwards
    y = conv.run(np.ones((1, 3, 5, 5), np.float32))
    assert y.shape == (1, 4, 3, 3) and np.allclose(y, 27.0)


def test_module_wrong_input_channels_raises():
    mod = SparseConv2d(torch.ones(4, 3, 3, 3), None, padding=(1, 1))
    # the module names the problem (engine.errors.InputError, a ValueError) and the shape
    with pytest.raises(ValueError, match=r"input must be \(N, 3, H, W\), got shape \(1, 5, 6, 6\)"):
        mod(torch.ones(1, 5, 6, 6))


def test_zero_batch_gives_empty_output():
    conv = _raw(k=(3, 3), pad=(1, 1))
    assert conv.run(np.ones((0, 3, 5, 5), np.float32)).shape == (0, 4, 5, 5)


FUZZ = textwrap.dedent("""
    # Garbage into the bindings: every call must return or raise ValueError / TypeError /
    # IndexError, never take the interpreter down.
    import numpy as np
    from engine import _kernels as K
    rng = np.random.default_rng(0)
    ok = bad = 0
    def arr(dtype):
        n = int(rng.integers(0, 5))
        return rng.integers(-3, 12, n).astype(dtype)
    for i in range(3000):
        o, c = (int(v) for v in rng.integers(-1, 6, 2))
        kern = tuple(int(v) for v in rng.integers(0, 4, 2))
        stride = tuple(int(v) for v in rng.integers(0, 9, 2))
        pad = tuple(int(v) for v in rng.integers(-1, 4, 2))
        dil = tuple(int(v) for v in rng.integers(0, 3, 2))
        try:
            conv = K.SparseConv(o, c, kern, stride, pad, dil, arr(np.int32), arr(np.int32),
                                np.sort(arr(np.int64)), arr(np.int32),
                                rng.standard_normal(int(rng.integers(0, 40))).astype(np.float32),
                                None if i % 2 else np.ones(max(o, 0), np.float32),
                                "relu" if i % 3 else "none", "auto")
        except (ValueError, TypeError, IndexError):
            bad += 1
            continue
        ok += 1
        for _ in range(3):
            shp = tuple(int(v) for v in rng.integers(0, 9, 4))
            try:
                conv.run(rng.standard_normal(shp).astype(np.float32))
            except (ValueError, TypeError, IndexError):
                pass
    print("ok", ok, bad)
""")


def test_fuzzed_arguments_never_crash():
    proc = subprocess.run([sys.executable, "-c", FUZZ], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.startswith("ok")


HUGE_STRIDE = textwrap.dedent("""
    import numpy as np
    from engine import _kernels as K
    for stride in [(65536, 65536), (46341, 46341)]:
        try:
            conv = K.SparseConv(1, 1, (3, 3), stride, (0, 0), (1, 1), np.array([0], np.int32),
                                np.array([1], np.int32), np.array([0, 9], np.int64),
                                np.arange(9, dtype=np.int32), np.ones(9, np.float32))
            conv.run(np.ones((1, 1, 3, 3), np.float32))
        except ValueError:
            pass
    print("ok")
""")


def test_huge_stride_is_rejected_not_a_crash():
    proc = subprocess.run([sys.executable, "-c", HUGE_STRIDE], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.returncode


def test_input_smaller_than_kernel_is_rejected_with_stride():
    conv = _raw(o=1, c=1, k=(3, 3), stride=(2, 2))
    with pytest.raises(ValueError, match="too small"):
        conv.run(np.ones((1, 1, 2, 2), np.float32))


FORK = textwrap.dedent("""
    # A forked child has none of the parent's pool threads; its first parallel run must
    # still finish. The parent kills the child itself so nothing is left spinning.
    import os, signal, sys, time
    import numpy as np
    from engine import _kernels as K
    from engine.runtime.packing import pack
    K.set_num_threads(2)
    p = pack(np.ones((64, 16, 3, 3), np.float32), 4)
    conv = K.SparseConv(64, 16, (3, 3), (1, 1), (1, 1), (1, 1), p.group_row0, p.group_rows,
                        p.group_ptr, p.entry_col, p.values)
    x = np.ones((1, 16, 32, 32), np.float32)
    conv.run(x)
    pid = os.fork()
    if pid == 0:
        conv.run(x)
        os._exit(0)
    deadline = time.time() + 10
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            sys.exit(0 if status == 0 else 2)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    sys.exit(1)
""")


def test_forked_child_can_run_kernels():
    proc = subprocess.run([sys.executable, "-c", FORK], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
