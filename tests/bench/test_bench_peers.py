"""`bench peers` on a small zoo model with ONNX Runtime only: the export runs in a process of
its own, its output agrees with an independent torch forward, and the JSON and the table carry
the row; a runtime whose output disagrees with torch is flagged and not timed; bad options are
one-line usage errors (exit 2)."""
import json
import re

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from engine import zoo  # noqa: E402
from engine.bench import peers  # noqa: E402

MODEL = "resnet18_cifar"
FAST = ["--models", MODEL, "--runtimes", "ort", "--threads", "1", "--rounds", "1",
        "--seconds", "0.05", "--peak", "0"]


def test_onnxruntime_agrees_with_torch_and_is_tabled_then_flagged_when_it_does_not(tmp_path):
    assert peers.main(FAST + ["--out", str(tmp_path)]) == 0
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
    assert peers.main(FAST + ["--out", str(tmp_path), "--reuse"]) == 0
    run, = json.loads((tmp_path / "peers.json").read_text())["runs"]
    assert "flagged" in run and "median_ms" not in run and run["rel_diff"] > 1e-2
    assert "FLAGGED" in (tmp_path / "peers.md").read_text()


@pytest.mark.parametrize("args,pattern", [
    (["--runtimes", "tflite"], r"--runtimes: .*'tflite'"),
    (["--runtimes", "ort,ort"], r"--runtimes: .*'ort,ort'"),
    (["--threads", "1,0"], r"--threads: .*'1,0'"),
    (["--threads", "two"], r"--threads: .*'two'"),
    (["--rounds", "0"], r"--rounds: .*'0'"),
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
