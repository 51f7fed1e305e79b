"""`bench peers` on a small zoo model with ONNX Runtime only: the export runs in a process of
its own, its output agrees with an independent torch forward, and the JSON and the table carry
the row; a runtime whose output disagrees with torch is flagged and not timed; bad options are
one-line usage errors (exit 2). int8: ONNX Runtime's static int8 export calibrates on the seeded
batches and agrees with torch's fp32 output within --tol-int8 (an export of other weights is
flagged), and the engine's int8 dense artifact does too."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from engine import zoo  # noqa: E402
from engine.bench import peers  # noqa: E402

MODEL = "resnet18_cifar"
ROOT = str(Path(peers.__file__).resolve().parents[2])
FAST = ["--models", MODEL, "--runtimes", "ort", "--threads", "1", "--rounds", "1",
        "--seconds", "0.05", "--peak", "0"]


def test_onnxruntime_agrees_with_torch_and_is_tabled_then_flagged_when_it_does_not(tmp_path):
    assert peers.main(FAST + ["--precision", "fp32", "--out", str(tmp_path)]) == 0
    cache = tmp_path / "cache" / MODEL
    torch.manual_seed(0)                  # the harness's seed: the same weights, the same input
    model = zoo.get(MODEL).eval()
    x = np.load(cache / "input.npy")
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.load(cache / "ref_peer.npy"), want, rtol=0, atol=1e-6)

    res = json.loads((tmp_path / "peers.json").read_text())
    run, = res["runs"]
    assert run["runtime"] == "ort" and run["threads"] == 1 and "flagged" not in run
    assert run["rel_diff"] < 1e-5 and run["median_ms"] > 0 and run["min_ms"] <= run["median_ms"]
    assert "core_to_core_ns" not in run and "windows" not in run    # 1 thread: not probed
    cell = res["summary"]["1"][MODEL]["ort"]
    assert cell["ms_min"] == run["median_ms"]
    assert res["dense_gflops"][MODEL] > 0.5      # ResNet-18 at 32x32: 0.56 G multiply-adds
    table = (tmp_path / "peers.md").read_text()
    assert re.search(rf"\| {MODEL} \| .*ONNX Runtime {run['median_ms']:.2f} ms", table)

    # an export of other weights (kept by --reuse) disagrees with torch: reported, not timed
    torch.manual_seed(1)
    torch.onnx.export(zoo.get(MODEL).eval(), (torch.from_numpy(x),), str(cache / "model.onnx"),
                      dynamo=False, input_names=["input0"])
    assert peers.main(FAST + ["--precision", "fp32", "--out", str(tmp_path), "--reuse"]) == 0
    run, = json.loads((tmp_path / "peers.json").read_text())["runs"]
    assert "flagged" in run and "median_ms" not in run and run["rel_diff"] > 1e-2
    assert "FLAGGED" in (tmp_path / "peers.md").read_text()


def _torch_output(x: np.ndarray) -> np.ndarray:
    torch.manual_seed(0)                  # the harness's seed: the same weights
    model = zoo.get(MODEL).eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _rel_l2(y, ref) -> float:
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


def _seeded_batches() -> np.ndarray:
    g = torch.Generator().manual_seed(0 + 1)          # --seed 0, plus one
    return np.stack([torch.randn(zoo.input_shape(MODEL), generator=g).numpy()
                     for _ in range(8)])


def test_onnxruntime_int8_calibrates_on_the_seeded_batches_then_is_flagged_on_other_weights(
        tmp_path):
    import onnxruntime as ort

    from engine.bench import peer_int8
    args = FAST + ["--precision", "int8", "--out", str(tmp_path)]
    assert peers.main(args) == 0
    cache = tmp_path / "cache" / MODEL
    calib = np.load(cache / "calib.npy")
    np.testing.assert_array_equal(calib, _seeded_batches())
    x = np.load(cache / "input.npy")
    want = _torch_output(x)
    sess = ort.InferenceSession(str(cache / "model_int8.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert 1e-4 < _rel_l2(got, want) < 0.1        # quantized, and close to torch's fp32

    res = json.loads((tmp_path / "peers.json").read_text())
    run, = res["runs"]
    assert run["key"] == "ort:int8" and run["variant"] == "int8" and "flagged" not in run
    assert abs(run["rel_l2"] - _rel_l2(got, want)) < 1e-3 and run["median_ms"] > 0
    assert run["info"]["int8_ops"]["QLinearConv"] == 20       # every conv fused to int8
    cell = res["summary"]["1"][MODEL]["ort:int8"]
    assert cell["ms_min"] == run["median_ms"] and res["tol_int8"] == 0.1
    table = (tmp_path / "peers.md").read_text()
    assert re.search(rf"\| {MODEL} \| ONNX Runtime int8 {run['median_ms']:.2f} ms "
                     rf"\(L2 tolerance 0.1\) \| {run['median_ms']:.2f} / ", table)
    assert res["int8_tolerance"] == {"1": {MODEL: 0.1}}     # 1.5 x ORT's 0.015 is below 0.1
    assert "dense GFLOP" not in table             # int8 only: no fp32 table

    # an int8 export of other weights (kept by --reuse): flagged, not timed
    torch.manual_seed(1)
    other = tmp_path / "other.onnx"
    torch.onnx.export(zoo.get(MODEL).eval(), (torch.from_numpy(x),), str(other),
                      dynamo=False, input_names=["input0"])
    peer_int8.export_ort_int8(other, cache / "model_int8.onnx", calib)
    assert peers.main(args + ["--reuse"]) == 0
    run, = json.loads((tmp_path / "peers.json").read_text())["runs"]
    assert "flagged" in run and "median_ms" not in run and run["rel_l2"] > 0.1
    assert "FLAGGED (rel. L2" in (tmp_path / "peers.md").read_text()


def test_the_engine_int8_dense_artifact_agrees_with_torch(tmp_path):
    pytest.importorskip("tvm")
    import engine
    from engine.bench import peer_build, peer_int8
    meta = peer_build.prepare(MODEL, tmp_path, ("engine",), False, 1, fp32=False)
    model, x = peer_build.seeded(MODEL, 0)
    mdir = tmp_path / "cache" / MODEL
    meta = peer_int8.prepare_int8(meta, mdir, model, x, ("engine",), False, 1,
                                  variants=("int8-dense",))
    art = meta["engine"]["int8-dense"]
    want = _torch_output(np.load(mdir / "input.npy"))
    got = np.asarray(engine.load(art, threads=1)(torch.from_numpy(np.load(mdir / "input.npy"))))
    assert _rel_l2(got.reshape(want.shape), want) < 0.1
    # its plan has int8 choices; the reference of such a plan is the fp32 masked model
    np.testing.assert_allclose(peer_build.masked_output(model, x, Path(art)),
                               want, rtol=0, atol=1e-5 * np.abs(want).max())
    r = subprocess.run([sys.executable, "-m", "engine.bench.peers", "one", "--runtime", "engine",
                        "--model", MODEL, "--variant", "int8-dense", "--threads", "1",
                        "--seconds", "0.05", "--out", str(tmp_path)],
                       capture_output=True, text=True, check=False,
                       env={**os.environ, "TVM_NUM_THREADS": "1", "PYTHONPATH": ROOT})
    run = json.loads(r.stdout.strip().splitlines()[-1])
    assert "flagged" not in run and run["median_ms"] > 0, run
    assert abs(run["rel_l2"] - _rel_l2(got.reshape(want.shape), want)) < 1e-3
    assert run["info"]["int8_layers"] > 0


def test_the_int8_table_compares_with_the_best_int8_peer_and_the_fp32_4x1_artifact():
    from engine.bench import peer_table

    def run(key, ms, **kw):
        return {"threads": 1, "model": "m", "key": key, "median_ms": ms, "min_ms": ms, **kw}
    runs = [run("ort", 9.0, rel_diff=0.0), run("engine:block4x1", 4.0, rel_diff=0.0),
            run("ort:int8", 6.0, rel_l2=0.02), run("openvino:int8", 3.0, rel_l2=0.03),
            run("engine:int8-block4x4", 2.0, rel_l2=1e-7,
                info={"int8_layers": 0, "layers": 5}),
            {"threads": 1, "model": "m", "key": "xnnpack:int8", "rel_l2": 1.0,
             "flagged": "int8 output differs"}]
    s = peer_table.summarize(runs)
    peer_table.ratios(s)
    keys = s["1"]["m"]
    cell = keys["engine:int8-block4x4"]
    assert peer_table.best_peer(keys, peer_table.PEERS_INT8)[0] == "openvino:int8"
    assert cell["ratio_vs_best_int8_peer"] == 1.5 and cell["best_int8_peer"] == "openvino:int8"
    assert cell["ratio_vs_engine_fp32"] == 2.0 and cell["engine_fp32"] == "engine:block4x1"
    assert "ratio_vs_best_int8_peer" not in keys["engine:block4x1"]
    md = peer_table.markdown_int8(s, ("engine", "ort", "openvino", "xnnpack"))
    row = next(ln for ln in md.splitlines() if ln.startswith("| m |"))
    assert row == ("| m | OpenVINO int8 3.00 ms | 6.00 / 6.00, L2 2.0e-02 | 3.00 / 3.00, L2 3.0e-02 "
                   "| FLAGGED (rel. L2 1.0e+00) | - | 2.00 / 2.00 (1.50x), L2 1.0e-07, 0/5 "
                   "layers int8 | - | 2.00x |")


@pytest.mark.parametrize("args,pattern", [
    (["--runtimes", "tflite"], r"--runtimes: .*'tflite'"),
    (["--runtimes", "ort,ort"], r"--runtimes: .*'ort,ort'"),
    (["--threads", "1,0"], r"--threads: .*'1,0'"),
    (["--threads", "two"], r"--threads: .*'two'"),
    (["--rounds", "0"], r"--rounds: .*'0'"),
    (["--precision", "int4"], r"--precision: .*'int4'"),
    (["--precision", "int8,int8"], r"--precision: .*'int8,int8'"),
    (["--tol-int8", "0"], r"--tol-int8: .*'0'"),
    (["--seconds", "-1"], r"--seconds: .*'-1'"),
    (["--models", "resnet50,nope"], r"--models: unknown model\(s\) \['nope'\]"),
    (["--artifacts", "/nonexistent"], r"--artifacts: no resnet50/mapped artifact"),
    (["--out", "/proc/peers"], r"--out: cannot write in '/proc'"),
    (["one", "--runtime", "ort"], r"one: give --runtime and --model"),
])
def test_bad_options_are_one_line_usage_errors(args, pattern, capsys):
    with pytest.raises(SystemExit) as e:
        peers.main(args)
    assert e.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and re.search(pattern, lines[0]), lines


def test_a_runtime_that_is_not_installed_is_a_one_line_note(tmp_path, capsys, monkeypatch):
    from engine.bench import peer_build
    monkeypatch.setitem(peer_build.NEEDS, "openvino", "no_such_package_zz")
    args = FAST[:2] + ["--runtimes", "openvino"] + FAST[4:] + ["--out", str(tmp_path)]
    assert peers.main(args) == 0
    out = capsys.readouterr()
    notes = [ln for ln in out.out.splitlines() if ln.startswith("note:")]
    assert notes == ["note: openvino: skipped, no_such_package_zz is not installed (pip install "
                     "openvino -c <(echo torch==2.13.0))"]
    assert "Traceback" not in out.err
    assert json.loads((tmp_path / "peers.json").read_text())["runs"] == []
