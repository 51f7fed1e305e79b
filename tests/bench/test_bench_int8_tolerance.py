"""`bench peers` int8: the tolerance follows what int8 costs on the network (peer_table.int8_flags:
max(--tol-int8, 1.5 x the best int8 peer's error)), and the benches' weights (plans.bench_model:
"init" as the zoo initialises them, "bn" with BatchNorm statistics re-estimated) are what the
exports and the plans' artifacts are made of, checked when --artifacts come from elsewhere.
References: hand-made summaries; the zoo model's own forward."""
import json

import pytest
import torch

from engine.bench import peer_build, plans
from engine.bench.peer_table import int8_flags, markdown_int8
from engine.errors import ConfigError


def _summary(errs: dict) -> dict:
    return {"1": {"m": {k: ({"rel_l2_max": e, "ms_min": 1.0, "ms_median": 1.0} if e < 1 else
                            {"rel_l2_max": e, "flagged": "no closer than a zero output"})
                        for k, e in errs.items()}}}


def test_the_int8_tolerance_follows_the_best_peer_on_that_network():
    # a network int8 is hard on (every runtime near 0.2): all compared, a 2x worse one not
    s = _summary({"ort:int8": 0.21, "openvino:int8": 0.20, "xnnpack:int8": 0.22,
                  "engine:int8-dense": 0.25, "engine:int8-mapped": 0.45})
    tols = int8_flags(s, 0.1)
    assert tols == {"1": {"m": pytest.approx(0.30)}}
    keys = s["1"]["m"]
    assert not any("flagged" in keys[k] for k in ("ort:int8", "openvino:int8", "xnnpack:int8",
                                                  "engine:int8-dense"))
    assert "tolerance 0.3" in keys["engine:int8-mapped"]["flagged"]
    assert "(L2 tolerance 0.3)" in markdown_int8(s, ("ort", "openvino", "xnnpack", "engine"),
                                                 tols)
    # an easy network (0.02): --tol-int8 is the floor; a runtime that gave zeros stays out
    s = _summary({"ort:int8": 0.02, "openvino:int8": 0.03, "xnnpack:int8": 1.0,
                  "engine:int8-dense": 0.08, "engine:int8-block4x4": 0.15})
    assert int8_flags(s, 0.1) == {"1": {"m": 0.1}}
    keys = s["1"]["m"]
    assert "flagged" not in keys["engine:int8-dense"] and "flagged" in keys["engine:int8-block4x4"]
    # no int8 peer: --tol-int8 alone
    s = _summary({"engine:int8-dense": 0.2})
    assert int8_flags(s, 0.1) == {"1": {"m": 0.1}} and "flagged" in s["1"]["m"]["engine:int8-dense"]


def _bn_stats(model):
    return [m.running_var.clone() for m in model.modules()
            if isinstance(m, torch.nn.BatchNorm2d)]


def test_bench_weights_init_and_bn():
    m0, x0 = plans.bench_model("mobilenetv2", 0, "init")
    m1, x1 = plans.bench_model("mobilenetv2", 0, "bn")
    assert torch.equal(x0, x1)                              # the same seeded input
    assert all(torch.equal(v, torch.ones_like(v)) for v in _bn_stats(m0))
    assert not any(torch.equal(v, torch.ones_like(v)) for v in _bn_stats(m1))
    with torch.no_grad():
        y0, y1 = m0(x0), m1(x1)
    # as initialised, the activations fade (below an int8 scale's floor); re-estimated, O(1)
    assert y0.abs().max() < 1e-4 < 1e-1 < y1.abs().max()
    with pytest.raises(ConfigError, match="weights must be one of"):
        plans.bench_model("mobilenetv2", 0, "trained")


def test_plans_of_other_weights_are_refused_by_name(tmp_path):
    d = tmp_path / "resnet18_cifar"
    (d / "mapped").mkdir(parents=True)
    (d / "mapped" / "manifest.json").write_text("{}")
    (d / "weights.json").write_text(json.dumps({"seed": 0, "weights": "init"}))
    found = peer_build._plans_artifacts("resnet18_cifar", tmp_path, tmp_path, True, 1, 0, "init")
    assert found == {"mapped": d / "mapped"}
    with pytest.raises(ConfigError, match="built with seed 0, weights 'init'; this run uses seed "
                                          "0, weights 'bn'"):
        peer_build._plans_artifacts("resnet18_cifar", tmp_path, tmp_path, True, 1, 0, "bn")
