"""engine.measure.rpc.RPCProfiler and engine.codegen.remote over TVM RPC on loopback: TVM's own
RPC server (and a tracker + server pair) in subprocesses, the host as the remote target."""
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

pytest.importorskip("tvm")

from mapping import DENSE, Candidate, LayerSpec  # noqa: E402

from engine.measure import RPCProfiler  # noqa: E402
from engine.measure.cache import kernels_build_id  # noqa: E402
from engine.measure.rpc import reference  # noqa: E402

CONV = LayerSpec("c", "conv2d", 8, 16, (3, 3), (1, 1), (1, 1), input_hw=(12, 12),
                 epilogue="relu+residual")
KEY = "engine-test"
# The device's runtime environment is part of what is measured: run the server as the engine
# runs TVM (all cores, short spin: engine/codegen/_tvm.py), or its idle TVM workers spin
# against the C++ kernels' pool.
ENV = {**os.environ, "TVM_NUM_THREADS": "2", "TVM_THREAD_POOL_SPIN_COUNT": "10000"}
TIMING = dict(min_repeat_ms=1, min_rounds=3, max_rounds=6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(*args) -> subprocess.Popen:
    # own process group: the server's listening worker (tvm.support.popen_pool) is a child
    # that outlives a plain terminate() of the parent
    return subprocess.Popen([sys.executable, "-m", *args], env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def _wait_listening(port: int, deadline: float) -> None:
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"nothing listening on 127.0.0.1:{port}")


def _has_tornado() -> bool:
    import importlib.util
    return importlib.util.find_spec("tornado") is not None   # TVM's tracker needs it


@pytest.fixture(scope="module")
def servers():
    """(server port, tracker port or None): a plain server, and (when TVM's tracker can run)
    a tracker with a server registered under KEY; started together to overlap their start-up."""
    sp, tp, tsp = _free_port(), _free_port(), _free_port()
    procs = [_start("tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(sp),
                    "--port-end", str(sp + 1))]
    tracked = _has_tornado()
    try:
        deadline = time.time() + 40
        if tracked:
            procs.append(_start("tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port",
                                str(tp), "--port-end", str(tp + 1)))
            _wait_listening(tp, deadline)
            procs.append(_start("tvm.exec.rpc_server", "--host", "127.0.0.1", "--port",
                                str(tsp), "--port-end", str(tsp + 1), "--tracker",
                                f"127.0.0.1:{tp}", "--key", KEY))
        _wait_listening(sp, deadline)
        if tracked:
            import tvm.rpc
            while KEY not in tvm.rpc.connect_tracker("127.0.0.1", tp).text_summary():
                if time.time() > deadline:
                    pytest.fail("the server never registered with the tracker")
                time.sleep(0.2)
        yield sp, (tp if tracked else None)
    finally:
        for p in procs:
            _stop(p)


def test_direct_server_dense_and_block_candidates(servers):
    sp, _ = servers
    prof = RPCProfiler("host", "127.0.0.1", sp, weights={"c": torch.randn(16, 8, 3, 3)},
                       **TIMING)
    assert prof.target == f"rpc/127.0.0.1:{sp}/host/{kernels_build_id()}"
    cands = [DENSE, Candidate("block", (4, 1), 0.8, "native"),
             Candidate("block", (4, 1), 0.8, "tir")]
    got = prof.measure(CONV, cands)
    # present = its device output matched torch (time_on_device leaves out any that differ)
    assert set(got) == {c.key for c in cands}, prof.notes
    for key, m in got.items():
        assert m.us > 0 and m.runs >= 3 and m.source == f"rpc://127.0.0.1:{sp}", key
    assert got["block4x1@0.80/tir"].kernel.startswith("tir_f32_spmm_4x")
    assert got["block4x1@0.80/native"].kernel == "spe.v1.sparse_conv2d:4r"
    # DENSE: the fastest of the C++ SpMM kernel with every column kept (8-row groups), the packed
    # dense kernels (implicit GEMM; Winograd for this 3x3 stride-1 conv) and the generated one
    assert got["dense"].kernel in ("spe.v1.sparse_conv2d:8r", "tir_f32_spmm_4x96__avx512",
                                   "gemm:spe.v1.dense_conv2d", "winograd:spe.v1.dense_conv2d")
    # a depthwise conv: dense only, on whichever dense kernel a compiled model would run
    dw = LayerSpec("dw", "conv2d", 16, 16, (3, 3), (2, 2), (1, 1), groups=16, input_hw=(12, 12),
                   epilogue="relu6")
    got = prof.measure(dw, [DENSE, Candidate("block", (4, 1), 0.8, "native")])
    assert set(got) == {"dense"} and got["dense"].us > 0, prof.notes
    assert any("grouped conv" in n for n in prof.notes)


def test_device_output_matches_torch_and_a_wrong_one_is_left_out(servers):
    """Run generated + native kernels remotely on real inputs, compare with torch."""
    from engine.codegen.remote import (KernelChoice, LayerShape, build_layer_module, connect,
                                       time_on_device)
    sp, _ = servers
    g = torch.Generator().manual_seed(3)
    w = torch.randn(16, 8, 3, 3, generator=g)
    w[:, :, 0, :] = 0                                          # a structured sparsity pattern
    b, x = torch.randn(16, generator=g), torch.randn(1, 8, 12, 12, generator=g)
    r = torch.randn(1, 16, 12, 12, generator=g)
    ref = reference(CONV, w, b, x, r, "relu")
    layer = LayerShape("conv2d", (1, 8, 12, 12), (1, 16, 12, 12), padding=(1, 1), act="relu",
                       residual=True)
    mod = build_layer_module(layer, [KernelChoice("t", "tir", w.numpy(), (4, 1)),
                                     KernelChoice("n", "native", w.numpy(), (4, 1)),
                                     KernelChoice("bad", "tir", w.numpy(), (2, 1))],
                             b.numpy(), "host")
    sess = connect("127.0.0.1", sp)
    res, failed = time_on_device(sess, mod, [x.numpy(), r.numpy()],
                                 {"t": ref, "n": ref, "bad": ref + 1.0}, **TIMING)
    assert set(res) == {"t", "n"} and "differs" in failed["bad"]
    scale = float(np.abs(ref).max())
    for name in ("t", "n"):
        assert res[name].max_err <= 1e-4 * scale and res[name].stats.median > 0


def test_packed_dense_algorithms_run_as_a_compiled_model_runs_them(servers):
    """A conv kept dense on the packed GEMM / Winograd kernels through the bridge: matches
    torch, and is labelled so that a plan's Choice.kernel names the algorithm again."""
    from engine.codegen.remote import (KernelChoice, LayerShape, build_layer_module, connect,
                                       time_on_device)
    from engine.measure.rpc import dense_algos
    from engine.runtime.dense import dense_algo
    sp, _ = servers
    g = torch.Generator().manual_seed(5)
    w, b = torch.randn(16, 8, 3, 3, generator=g), torch.randn(16, generator=g)
    x, r = torch.randn(1, 8, 12, 12, generator=g), torch.randn(1, 16, 12, 12, generator=g)
    ref = reference(CONV, w, b, x, r, "relu")
    layer = LayerShape("conv2d", (1, 8, 12, 12), (1, 16, 12, 12), padding=(1, 1), act="relu",
                       residual=True)
    assert dense_algos(CONV) == ("gemm", "winograd")
    mod = build_layer_module(layer, [KernelChoice(a, "native", w.numpy(), dense=True, algo=a)
                                     for a in dense_algos(CONV)], b.numpy(), "host")
    assert {n: dense_algo(k) for n, k in mod.labels.items()} == {"gemm": "gemm",
                                                                 "winograd": "winograd"}
    res, failed = time_on_device(connect("127.0.0.1", sp), mod, [x.numpy(), r.numpy()],
                                 {"gemm": ref, "winograd": ref}, **TIMING)
    assert set(res) == {"gemm", "winograd"} and not failed
    scale = float(np.abs(ref).max())
    assert all(res[a].max_err <= 1e-4 * scale for a in res)
    # stride 2: no Winograd offered, and one asked for anyway is skipped with the reason
    s2 = LayerSpec("s2", "conv2d", 8, 16, (3, 3), (2, 2), (1, 1), input_hw=(12, 12))
    assert dense_algos(s2) == ("gemm",)
    assert dense_algos(LayerSpec("dw", "conv2d", 8, 8, (3, 3), groups=8)) == ()
    layer2 = LayerShape("conv2d", (1, 8, 12, 12), (1, 16, 6, 6), (2, 2), (1, 1))
    mod2 = build_layer_module(layer2, [KernelChoice("w", "native", w.numpy(), dense=True,
                                                    algo="winograd")], b.numpy(), "host")
    assert mod2.executable is None and "winograd" in mod2.skipped["w"]


def test_through_the_tracker(servers):
    _, tp = servers
    if tp is None:
        pytest.skip("TVM's RPC tracker needs the tornado package (pip install tornado)")
    prof = RPCProfiler("host", "127.0.0.1", tp, key=KEY, **TIMING)
    assert prof.target == f"rpc/{KEY}/host/{kernels_build_id()}"
    fc = LayerSpec("fc", "linear", 32, 8, epilogue="relu")
    got = prof.measure(fc, [DENSE, Candidate("block", (2, 1), 0.5, "tir"),
                            Candidate("block", (2, 1), 0.5, "native")])
    assert set(got) == {"dense", "block2x1@0.50/tir"}          # native linear: left out
    assert all(m.us > 0 for m in got.values())
    assert got["dense"].kernel.startswith("tir_f32_gemv_")
    assert any("linear layers as generated TIR" in n for n in prof.notes)
