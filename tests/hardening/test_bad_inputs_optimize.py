"""optimize() refuses every bad input up front with an error that names the option (or input) and
the value, and leaves the user's model as it was. One row per case."""
import math

import pytest
import torch

import engine
from engine.errors import ConfigError
from small_net import Small


X = torch.randn(1, 3, 8, 8)
NAN = torch.full((1, 3, 8, 8), math.nan)
INF = X.clone().index_fill_(3, torch.tensor([2]), math.inf)

# (case id, example input, optimize keywords, error type, regex the message must match)
CASES = [
    ("batch 0", torch.randn(0, 3, 8, 8), {}, ConfigError, r"example_inputs\[0\] is empty.*\(0, 3, 8, 8\)"),
    ("NaN input", NAN, {}, ConfigError, r"example_inputs\[0\] holds NaN"),
    ("Inf input", INF, {}, ConfigError, r"example_inputs\[0\] holds Inf \(0 NaN, 24 Inf"),
    ("wrong channels", torch.randn(1, 4, 8, 8), {}, ConfigError,
     r"model fails on example_inputs of shape \(1, 4, 8, 8\).*channels"),
    ("sparsity string", X, {"sparsity": "high"}, ConfigError, r"sparsity.*got 'high'"),
    ("sparsity None", X, {"sparsity": None}, ConfigError, r"sparsity.*got None"),
    ("sparsity NaN", X, {"sparsity": math.nan}, ConfigError, r"sparsity.*got nan"),
    ("sparsity bool", X, {"sparsity": True}, ConfigError, r"sparsity.*got True"),
    ("sparsity 1", X, {"sparsity": 1.0}, ConfigError, r"sparsity must be a number in \[0, 1\)"),
    ("block float", X, {"block": (4.7, 1)}, ConfigError, r"block .*ints >= 1, got \(4\.7, 1\)"),
    ("block bool", X, {"block": (True, 1)}, ConfigError, r"block .*got \(True, 1\)"),
    ("block 3-tuple", X, {"block": (4, 1, 1)}, ConfigError, r"block must be \(rows, cols\)"),
    ("block string", X, {"block": "4by1"}, ConfigError, r"block must look like '4x1'"),
    ("min_speedup NaN", X, {"min_speedup": math.nan}, ConfigError, r"'min_speedup'.*got nan"),
    ("min_speedup inf", X, {"min_speedup": math.inf}, ConfigError, r"'min_speedup'.*got inf"),
    ("min_speedup < 1", X, {"min_speedup": 0.5}, ConfigError, r"'min_speedup'.*>= 1, got 0\.5"),
    ("min_speedup string", X, {"min_speedup": "fast"}, ConfigError, r"'min_speedup'.*'fast'"),
    ("threads 0", X, {"threads": 0}, ConfigError, r"'threads'.*got 0"),
    ("threads float", X, {"threads": 2.0}, ConfigError, r"'threads'.*got 2\.0"),
    ("threads bool", X, {"threads": True}, ConfigError, r"'threads'.*got True"),
    ("threads huge", X, {"threads": 10**6}, ConfigError, r"'threads'.*\[1, 256\].*1000000"),
    ("measure string", X, {"measure": "no"}, ConfigError, r"'measure' must be True or False"),
    ("capture int", X, {"capture": 0}, ConfigError, r"'capture' must be True or False"),
    ("progress string", X, {"progress": "yes"}, ConfigError, r"'progress'"),
    ("exclude int", X, {"exclude": 3}, ConfigError, r"'exclude'.*got 3"),
    ("exclude list of int", X, {"exclude": [3]}, ConfigError, r"'exclude'.*\[3\]"),
    ("exclude unknown layer", X, {"exclude": "nope"}, ConfigError, r"exclude names 'nope'"),
    ("isa int", X, {"isa": 3}, ConfigError, r"'isa' must be a string"),
    ("isa unknown", X, {"isa": "sse"}, ConfigError, r"isa 'sse' is not available"),
    ("backends int", X, {"backends": 3}, ConfigError, r"'backends'.*got 3"),
    ("backends unknown", X, {"backends": "cuda"}, ConfigError, r"backends must be.*'cuda'"),
    ("target None", X, {"target": None}, ConfigError, r"unknown target None.*arm64"),
    ("scheme None", X, {"scheme": None}, ConfigError, r"unknown scheme None.*block"),
    ("unknown scheme option", X, {"foo": 3}, ConfigError, r"unknown option.*'foo'"),
    ("importance unknown", X, {"importance": "l3"}, ConfigError, r"unknown importance 'l3'"),
    ("plan string", X, {"plan": "/nonexistent/plan.json"}, ConfigError,
     r"'plan': cannot read '/nonexistent/plan\.json'"),
    ("plan int", X, {"plan": 3}, ConfigError, r"'plan' must be a mapping\.Plan.*int"),
    ("mapper unknown", X, {"mapper": "xyz"}, ConfigError, r"mapper must be one of.*'xyz'"),
    ("latency_budget string", X, {"mapper": "rule", "latency_budget": "a"}, ConfigError,
     r"'latency_budget'.*'a'"),
    ("latency_budget NaN", X, {"mapper": "rule", "latency_budget": math.nan}, ConfigError,
     r"'latency_budget'.*nan"),
    ("search_time negative", X, {"mapper": "search", "search_time": -1}, ConfigError,
     r"'search_time'.*-1"),
    ("seed string", X, {"mapper": "search", "seed": "a"}, ConfigError, r"'seed' must be an int"),
    ("min_proxy string", X, {"mapper": "rule", "min_proxy": "abc"}, ConfigError,
     r"'min_proxy'.*'abc'"),
    ("min_proxy NaN", X, {"mapper": "rule", "min_proxy": math.nan}, ConfigError,
     r"'min_proxy'.*nan"),
    ("finetune int", X, {"finetune": 3}, ConfigError, r"finetune must be a dict.*int"),
    ("example_inputs string", "x", {}, ConfigError, r"example_inputs\[0\] is str"),
    ("example_inputs double", X.double(), {}, ConfigError, r"example_inputs\[0\] must be a float32"),
]


@pytest.mark.parametrize("x,kwargs,exc,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error_and_loses_nothing(x, kwargs, exc, pattern):
    model = Small().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kwargs = {"measure": False, **kwargs}
    with pytest.raises(exc, match=pattern):
        engine.optimize(model, (x,), **kwargs)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_model_none():
    with pytest.raises(ConfigError, match="model must be a torch.nn.Module, got NoneType"):
        engine.optimize(None, (X,))


def test_plan_path_round_trip(tmp_path):
    """plan= also takes the path of a saved plan (the error cases above are about that path)."""
    opt = engine.optimize(Small(), (X,), sparsity=0.5, measure=False)
    opt.plan.save(tmp_path / "plan.json")
    again = engine.optimize(Small(), (X,), plan=str(tmp_path / "plan.json"), measure=False)
    assert [c.scheme for c in again.plan] == [c.scheme for c in opt.plan]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="'plan'.*is not a saved plan"):
        engine.optimize(Small(), (X,), plan=str(tmp_path / "bad.json"), measure=False)
