"""engine.measure.host.HostProfiler: every runnable candidate timed, DENSE's kernel named,
TIR only with tvm; and the measure.py settling rule it relies on."""
import io

import pytest
import torch

from engine.errors import ConfigError
from engine.measure import HostProfiler
from engine.progress import callback
from engine.measure.host import tvm_available
from mapping import DENSE, Candidate, LayerSpec

CONV = LayerSpec("c", "conv2d", 8, 16, (3, 3), (1, 1), (1, 1), input_hw=(10, 10),
                 epilogue="relu+residual")
FC = LayerSpec("fc", "linear", 32, 8, epilogue="relu")


def _cands(backends):
    return [DENSE] + [Candidate("block", (4, 1), 0.8, b) for b in backends] + [
        Candidate("block", (1, 1), 0.5, "native"), Candidate("pattern", None, 0.6, "native"),
        Candidate("nm", None, 0.5, "native", (("n", 2), ("m", 4)))]


@pytest.fixture(scope="module")
def measured():
    backends = ("native", "tir") if tvm_available() else ("native",)
    prof = HostProfiler({"c": torch.randn(16, 8, 3, 3)}, min_time=0.002, backends=backends)
    fc = [DENSE, Candidate("block", (2, 1), 0.5, "native"), Candidate("block", (2, 1), 0.5, "tir")]
    return prof, backends, prof.measure(CONV, _cands(backends)), prof.measure(FC, fc)


def test_every_runnable_candidate_measured_with_positive_times(measured):
    prof, backends, conv, _ = measured
    want = {c.key for c in _cands(backends)}
    assert set(conv) == want
    for key, m in conv.items():
        assert m.us > 0 and m.runs >= 6 and m.spread >= 0 and m.source == "host", key
        assert m.kernel, key
    assert conv["block4x1@0.80/native"].kernel.startswith("f32_spmm_4x")
    assert conv["pattern@0.60/native"].kernel.startswith("f32_spmm_1x")


def test_dense_names_the_faster_dense_backend(measured):
    _, _, conv, fc = measured
    for got in (conv, fc):
        k = got["dense"].kernel
        assert k == "torch" or k.startswith(("f32_spmm_8x", "gemm:f32_gemm_",
                                             "winograd:f32_gemm_", "tir_f32_spmm_4x")), k
    # the packed dense kernels and the generated dense one: convs only
    assert ":" not in fc["dense"].kernel and not fc["dense"].kernel.startswith("tir_")


def test_dense_is_the_fastest_dense_backend():
    """DENSE is the fastest of every dense backend measured, the packed dense kernels among
    them (Winograd for a 3x3 stride-1 conv), each named by its kernel."""
    spec = LayerSpec("c3", "conv2d", 32, 32, (3, 3), (1, 1), (1, 1), input_hw=(14, 14),
                     epilogue="relu")
    got = HostProfiler(min_time=0.002).measure(spec, [DENSE], detail=True)
    backends = {k: m for k, m in got.items() if k.startswith("dense/")}
    want = {"dense/torch", "dense/native", "dense/gemm", "dense/winograd"}
    assert set(backends) == want | ({"dense/tir"} if tvm_available() else set())
    if tvm_available():     # the generated kernel on every column, 4-row groups
        assert backends["dense/tir"].kernel.startswith("tir_f32_spmm_4x")
    assert backends["dense/gemm"].kernel.startswith("gemm:f32_gemm_")
    assert backends["dense/winograd"].kernel.startswith("winograd:f32_gemm_")
    fastest = min(backends.values(), key=lambda m: m.us)
    assert got["dense"].us == fastest.us and got["dense"].kernel == fastest.kernel


@pytest.mark.skipif(not tvm_available(), reason="apache-tvm not installed")
def test_tir_candidates_with_tvm(measured):
    _, _, conv, fc = measured
    assert conv["block4x1@0.80/tir"].kernel.startswith("tir_f32_spmm_4x")
    assert fc["block2x1@0.50/tir"].kernel.startswith("tir_f32_gemv_2x")


def test_without_tir_backend_no_generated_dense():
    spec = LayerSpec("c3", "conv2d", 16, 16, (3, 3), (2, 2), (1, 1), input_hw=(14, 14))
    got = HostProfiler(min_time=0.002, backends=("native",)).measure(spec, [DENSE], detail=True)
    assert "dense/tir" not in got and not got["dense"].kernel.startswith("tir_")


def test_without_tir_backend_tir_candidates_are_left_out():
    prof = HostProfiler(min_time=0.002, backends=("native",))
    got = prof.measure(FC, [Candidate("block", (2, 1), 0.5, "tir")])
    assert got == {}
    assert "backend tir" in prof.notes[0]
    assert prof.why_not(FC, Candidate("block", (2, 1), 0.5, "native")) is None


def test_unbuildable_candidates_are_left_out_with_reasons():
    prof = HostProfiler(min_time=0.002, backends=("native",))
    assert "at least 0.556" in prof.why_not(CONV, Candidate("pattern", None, 0.5, "native"))
    assert "3x3" in prof.why_not(FC, Candidate("pattern", None, 0.8, "native"))
    dw = LayerSpec("dw", "conv2d", 8, 8, (3, 3), padding=(1, 1), groups=8, input_hw=(6, 6))
    assert "grouped" in prof.why_not(dw, Candidate("block", (4, 1), 0.8, "native"))
    assert set(prof.measure(dw, [DENSE])) == {"dense"}       # grouped: dense only


def test_target_names_cpu_isa_threads_and_bad_options_are_named():
    from engine import _kernels
    prof = HostProfiler(threads=1)
    import hashlib
    import engine
    from engine.measure.cache import kernels_build_id
    want = hashlib.sha256(engine.__version__.encode())
    with open(_kernels.__file__, "rb") as f:
        want.update(f.read())
    assert kernels_build_id() == "k" + want.hexdigest()[:10]     # version + kernel binary
    assert prof.target.startswith("host/") and prof.target.endswith(
        f"/{_kernels.best_isa()}/1t/{kernels_build_id()}")
    with pytest.raises(ConfigError, match="threads"):
        HostProfiler(threads=0)
    with pytest.raises(ConfigError, match="isa"):
        HostProfiler(isa="sse9")
    with pytest.raises(ConfigError, match="'c'.*shape"):
        HostProfiler({"c": torch.randn(3, 3)}).measure(CONV, [DENSE])


def test_progress_line_draws_only_when_enabled():
    out = io.StringIO()
    p = callback("profiling x", "shapes", enabled=True, stream=out)
    p(1, 2, "shape-a")
    p(2, 2, "shape-b")
    text = out.getvalue()
    assert "1/2 shapes" in text and "2/2 shapes" in text and text.endswith("\n")
    quiet = io.StringIO()
    callback("profiling x", "shapes", stream=quiet)(1, 2, "x")   # not a terminal: off
    assert quiet.getvalue() == ""


def test_inconsistent_entries_are_the_ones_slower_than_a_sparser_sibling():
    from types import SimpleNamespace as S
    from engine.measure.host import _inconsistent
    st = {"dense/torch": S(median=10.0), "dense/native": S(median=9.0),
          "block4x1@0.70/native": S(median=5.0), "block4x1@0.80/native": S(median=9.0),
          "block4x1@0.90/native": S(median=3.0), "block8x1@0.70/native": S(median=4.0),
          "block8x1@0.90/native": S(median=4.2), "block4x1@0.80/tir": S(median=1.0)}
    # 0.80 is slower than 0.70 (same family): both suspects; 8x1 within 10%: fine
    assert _inconsistent(st, 0.10) == {"block4x1@0.70/native", "block4x1@0.80/native"}
    assert _inconsistent(st, 1.0) == set()


def test_close_dense_backends_are_timed_again_and_keep_their_best_median():
    from types import SimpleNamespace as S
    p = HostProfiler(threads=1, backends="native")
    mods = {"dense/torch": None, "dense/native": None, "dense/gemm": None,
            "block4x1@0.80/native": None}
    st = {"dense/torch": S(median=20.0), "dense/native": S(median=10.0),
          "dense/gemm": S(median=10.5), "block4x1@0.80/native": S(median=3.0)}
    runs = []

    def fake_time(m, args):   # the second run: gemm faster, native slower (a burst)
        runs.append(sorted(m))
        return {"dense/native": S(median=11.0), "dense/gemm": S(median=9.0)}

    p._time = fake_time
    out = p._settle_dense(mods, (), dict(st))
    # only the dense backends within 8% of the fastest, and again while they stay close
    assert runs == [["dense/gemm", "dense/native"]]
    assert out["dense/gemm"].median == 9.0 and out["dense/native"].median == 10.0
    assert out["dense/torch"].median == 20.0 and out["block4x1@0.80/native"].median == 3.0
    runs.clear()
    p._settle_dense(mods, (), {**st, "dense/gemm": S(median=12.0)})   # 20% apart: no call
    assert runs == []
