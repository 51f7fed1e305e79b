"""Concurrency: threads sharing an optimized model, and fork while a thread is busy in it.

Issue P5.2: a process forked while another thread was inside `opt(x)` hung in the child on the
layer's lock (the kernel pool resets itself after fork, the layers' locks did not). Now a layer
only ever try_locks its cached workspace and computes in a private one when it is busy, so:
  - threads calling one optimized model at once all get the masked reference's result
    (`opt.pruned_model`), none waits on another's layer;
  - a child forked while another thread loops over `opt(x)` computes `opt(x)` correctly and
    exits; so does one forked while threads use the raw engine._kernels layers, or while a
    thread runs a TVM-compiled module whose layers call the kernels through the bridge.
Every scenario runs in a subprocess with a timeout (a hang fails the test instead of hanging
the suite); each fork's child is waited for with a deadline and killed past it. torch runs on
one thread there, to keep its own OpenMP pool out of the fork.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PRELUDE = textwrap.dedent("""
    import os, signal, sys, threading, time
    import torch
    from torch import nn
    torch.set_num_threads(1)
    import engine
    from engine import _kernels as K

    class Net(nn.Module):
        # four convs (3x3, strided, 1x1) and a linear layer, all sparse
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 32, 3, padding=1)
            self.c2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
            self.c3 = nn.Conv2d(64, 64, 1, stride=2)
            self.c4 = nn.Conv2d(64, 64, 3, padding=1)
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            for c in (self.c1, self.c2, self.c3, self.c4):
                x = torch.relu(c(x))
            return self.fc(x.mean((2, 3)))

    def optimized():
        torch.manual_seed(0)
        opt = engine.optimize(Net().eval(), (torch.randn(1, 3, 24, 24),), sparsity=0.6,
                              measure=False, progress=False)
        native = [c for c in opt.plan.choices if c.backend == "native" and c.scheme != "dense"]
        assert len(native) == 5, opt.plan
        return opt

    def wait_child(pid, seconds):
        # the child's exit status, or "hung" after killing it
        deadline = time.time() + seconds
        while time.time() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return "hung"

    def fork_while_busy(call, check, forks, pause):
        # a thread loops over call(); each child forked meanwhile exits 0 if check() holds,
        # 3 if not, 4 if it raised
        stop, calls = [False], [0]

        def busy():
            with torch.no_grad():
                while not stop[0]:
                    call()
                    calls[0] += 1

        t = threading.Thread(target=busy)
        t.start()
        while calls[0] < 2:
            time.sleep(0.001)
        results = []
        for f in range(forks):
            time.sleep(pause(f))
            pid = os.fork()
            if pid == 0:
                try:
                    with torch.no_grad():
                        ok = check()
                except BaseException:
                    os._exit(4)
                os._exit(0 if ok else 3)
            results.append(wait_child(pid, 20))
        stop[0] = True
        t.join()
        assert results == [0] * forks, \
            f"children: {results} (hung: killed after 20 s; 3: wrong result; 4: raised)"
""")

THREADS = PRELUDE + textwrap.dedent("""
    opt = optimized()
    K.set_num_threads(2)
    xs = [torch.randn(2, 3, 20 + 4 * i, 24 + 2 * i) for i in range(4)]
    with torch.no_grad():
        refs = [opt.pruned_model(x) for x in xs]
    errors = []

    def worker(t):
        try:
            for i in range(12):
                k = (t + i) % 4
                with torch.no_grad():
                    y = opt(xs[k])
                if not torch.allclose(y, refs[k], rtol=1e-4, atol=1e-4):
                    errors.append((t, i, (y - refs[k]).abs().max().item()))
        except Exception as e:  # reported below
            errors.append((t, repr(e)))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    print("ok")
""")

FORK_WHILE_BUSY = PRELUDE + textwrap.dedent("""
    opt = optimized()
    K.set_num_threads(2)
    x = torch.randn(1, 3, 96, 96)  # large enough that the loop is mostly inside the layers
    with torch.no_grad():
        want = opt.pruned_model(x)
        assert torch.allclose(opt(x), want, rtol=1e-4, atol=1e-4)
    # each fork lands inside one of the busy thread's layer calls often
    fork_while_busy(lambda: opt(x), lambda: torch.allclose(opt(x), want, rtol=1e-4, atol=1e-4),
                    20, lambda f: 0.002 * (f % 5))
    print("ok")
""")

FORK_RAW_KERNELS = PRELUDE + textwrap.dedent("""
    import numpy as np
    from engine.runtime.packing import pack
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)
    w[rng.random(w.shape) < 0.6] = 0
    p = pack(w, 4)
    conv = K.SparseConv(64, 32, (3, 3), (2, 1), (1, 1), (1, 1), p.group_row0, p.group_rows,
                        p.group_ptr, p.entry_col, p.values, None, "relu", "auto")
    dw = K.DepthwiseConv(32, (3, 3), (1, 1), (1, 1), (1, 1),
                         rng.standard_normal((32, 1, 3, 3)).astype(np.float32))
    x = rng.standard_normal((1, 32, 40, 40)).astype(np.float32)
    K.set_num_threads(2)
    want = (conv.run(x), dw.run(x), K.max_pool2d(x, (3, 3), (2, 2), (1, 1)))
    stop = False

    def busy(f):
        while not stop:
            f()

    threads = [threading.Thread(target=busy, args=(f,)) for f in
               (lambda: conv.run(x), lambda: dw.run(x),
                lambda: K.max_pool2d(x, (3, 3), (2, 2), (1, 1)))]
    for t in threads:
        t.start()
    time.sleep(0.05)
    results = []
    for f in range(6):
        time.sleep(0.002 * f)
        pid = os.fork()
        if pid == 0:
            got = (conv.run(x), dw.run(x), K.max_pool2d(x, (3, 3), (2, 2), (1, 1)))
            os._exit(0 if all(np.array_equal(a, b) for a, b in zip(got, want)) else 3)
        results.append(wait_child(pid, 20))
    stop = True
    for t in threads:
        t.join()
    assert results == [0] * 6, f"children: {results} (hung: killed after 20 s; 3: wrong result)"
    print("ok")
""")


# The same through a TVM-compiled module calling the kernels via the bridge (its layers and
# its layer cache): a thread loops over the module, children forked meanwhile run it. The busy
# thread has a VM of its own: a Relax VM object keeps its call's state (frames, registers) and
# a VM forked mid-call is unusable in the child (TVM's, not the bridge's; the engine's artifacts
# make fork wait for their calls: FORK_ARTIFACT below).
FORK_TVM_BRIDGE = PRELUDE + textwrap.dedent("""
    import numpy as np
    try:
        import tvm
        from tvm import relax
    except ImportError:
        print("skip: tvm not installed")
        raise SystemExit(0)
    from engine.codegen.native_bridge import bridge_object
    from engine.runtime.packing import pack
    rng = np.random.default_rng(0)
    o, c, h = 64, 32, 48
    w = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    w[rng.random(w.shape) < 0.6] = 0
    p = pack(w, 4)
    meta = np.array([o, c, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0], np.int32)
    consts = [meta, p.group_row0, p.group_rows, p.group_ptr, p.entry_col, p.values,
              np.zeros(o, np.float32), np.zeros(1, np.float32)]
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.type.TensorType((1, c, h, h), "float32"))
    with bb.function("main", [xv]):
        with bb.dataflow():
            y = bb.emit(relax.call_dps_packed(
                "spe.v1.sparse_conv2d", relax.Tuple([xv] + [relax.const(a) for a in consts]),
                out_ty=relax.type.TensorType((1, o, h, h), "float32")))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    ex = tvm.compile(bb.get(), target=tvm.target.Target({"kind": "llvm"}))
    path = os.path.join(sys.argv[1], "m.so")
    ex.export_library(path, addons=[str(bridge_object(os.uname().machine))])
    lib = tvm.runtime.load_module(path)
    vm, vm_busy = relax.VirtualMachine(lib, tvm.cpu()), relax.VirtualMachine(lib, tvm.cpu())
    x = rng.standard_normal((1, c, h, h)).astype(np.float32)
    K.set_num_threads(2)
    want = vm["main"](tvm.runtime.tensor(x)).numpy()
    stop = False

    def busy():
        while not stop:
            vm_busy["main"](tvm.runtime.tensor(x))

    t = threading.Thread(target=busy)
    t.start()
    time.sleep(0.05)
    results = []
    for f in range(12):
        time.sleep(0.002 * (f % 5))
        pid = os.fork()
        if pid == 0:
            ok = np.array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), want)
            os._exit(0 if ok else 3)
        results.append(wait_child(pid, 20))
    stop = True
    t.join()
    assert results == [0] * 12, f"children: {results} (hung: killed after 20 s; 3: wrong result)"
    print("ok")
""")


# A saved artifact (engine.load) shared by a busy thread: each fork waits for the call in flight
# (engine/artifact/fork.py), and the child's own call returns the right output. Without that
# wait a child forked mid-call hung on the artifact's lock or ran a half-written VM frame.
FORK_ARTIFACT = PRELUDE + textwrap.dedent("""
    try:
        import tvm  # noqa: F401
    except ImportError:
        print("skip: tvm not installed")
        raise SystemExit(0)
    opt = optimized()
    opt.save(os.path.join(sys.argv[1], "art"))
    art = engine.load(os.path.join(sys.argv[1], "art"), threads=2)
    x = torch.randn(1, 3, 24, 24)
    with torch.no_grad():
        want = opt.pruned_model(x)
    assert torch.allclose(art(x), want, rtol=1e-4, atol=1e-4)
    fork_while_busy(lambda: art(x), lambda: torch.allclose(art(x), want, rtol=1e-4, atol=1e-4),
                    30, lambda f: 0.0005 * (f % 7))
    print("ok")
""")


@pytest.mark.parametrize("script", [THREADS, FORK_WHILE_BUSY, FORK_RAW_KERNELS, FORK_TVM_BRIDGE,
                                    FORK_ARTIFACT],
                         ids=["threads-share-a-model", "fork-while-opt-is-busy",
                              "fork-after-threaded-raw-kernels", "fork-while-tvm-module-is-busy",
                              "fork-while-artifact-is-busy"])
def test_concurrency(script, tmp_path):
    try:
        proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                              text=True, timeout=240)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"hung for {e.timeout} s (a deadlock)")
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    if proc.stdout.startswith("skip:"):
        pytest.skip(proc.stdout.strip())
    assert proc.stdout.strip().endswith("ok")
