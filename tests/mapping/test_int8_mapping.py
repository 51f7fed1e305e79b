"""Bit-width as a mapping dimension: int8 candidates, the domain changes between layers, the
rule mapper's int8 rule and the search over bits + scheme + block + sparsity. References: the
scalar Conversions.cost against the vectorised one, Problem.latency written out by hand, and a
brute force over every assignment of small problems."""
import itertools

import numpy as np
import pytest

from mapping import (DENSE, Budget, Candidate, CostTable, LayerSpec, Measurement, Problem,
                     RuleConfig, RuleMapper, TableProxy, why_not)
from mapping.domains import Conversions, Tensor
from mapping.search import EvolutionMapper
from mapping.search.genome import GenomeSpace

T = "syn"
INT8 = Candidate("block", (4, 4), 0.8, bits=8)
FP32 = Candidate("block", (4, 1), 0.8)
D8 = DENSE.with_bits(8)


def conv(name, order, cin=64, cout=64, k=1, groups=1, epilogue="relu"):
    return LayerSpec(name, "conv2d", cin, cout, (k, k), padding=(k // 2, k // 2),
                     groups=groups, input_hw=(28, 28), epilogue=epilogue, order=order)


def test_int8_candidate_keys_round_trip_and_checks():
    for c in (INT8, D8, Candidate("pattern", None, 0.7, bits=8), FP32, DENSE):
        assert Candidate.from_key(c.key) == c
    assert INT8.key == "block4x4@0.80/native+int8" and D8.key == "dense+int8"
    assert not D8.is_dense and not D8.pruned and D8.is_int8 and DENSE.is_dense
    assert FP32.with_bits(8).key == "block4x1@0.80/native+int8"
    with pytest.raises(ValueError, match="bits"):
        Candidate("block", (4, 4), 0.8, bits=16)
    with pytest.raises(ValueError, match="native"):
        Candidate("block", (4, 4), 0.8, "tir", bits=8)


def test_int8_applicability():
    assert why_not(conv("a", 0), INT8) is None
    assert why_not(conv("dw", 0, groups=64, k=3), D8) is None          # depthwise: int8 dense
    assert "grouped" in why_not(conv("g", 0, groups=4, k=3), D8)
    # a linear layer: int8 dense and int8 blocks of whole column quads (QLinear)
    fc = LayerSpec("fc", "linear", 64, 10, batch=16)
    assert why_not(fc, D8) is None and why_not(fc, INT8) is None
    assert "epilogue" in why_not(LayerSpec("fc", "linear", 64, 10, epilogue="gelu"), D8)
    assert "epilogue" in why_not(conv("h", 0, epilogue="hardswish"), INT8)
    assert why_not(conv("r", 0, epilogue="relu+residual"), INT8) is None
    # an RGB stem: its 3 channels are one column quad a tap for the int8 kernels, not for fp32
    stem = conv("stem", 0, cin=3, cout=32, k=3)
    assert why_not(stem, INT8) is None and why_not(stem, Candidate("block", (8, 4), 0.8, bits=8)) is None
    assert "block cols 4 > input channels 3" in why_not(stem, Candidate("block", (4, 4), 0.8))
    assert "block cols 8 > input channels 3" in why_not(stem, Candidate("block", (4, 8), 0.8, bits=8))


def _scalar_cost(conv_: Conversions, bits: dict) -> float:
    """An independent reference: per tensor, the producer's domain vs each consumer's."""
    total = 0.0
    for t in conv_.tensors:
        src = bits.get(t.producer, 32) if t.producer else 32
        dsts = [bits.get(c, 32) if c else 32 for c in t.consumers]
        if any(d != src for d in dsts):
            total += t.quantize_us if src == 32 else t.dequantize_us
    return total


def _chain(n=5, residual=True, q=7.0, dq=5.0):
    """n 1x1 convs in a chain, input from a float value, the last one's output to a float
    consumer, and (residual) layer 1's output also read by layer 3 (a skip)."""
    names = [f"l{i}" for i in range(n)]
    ts = [Tensor("x", None, ("l0",), q, dq)]
    for i in range(n - 1):
        cons = (names[i + 1],) + (("l3",) if residual and i == 1 else ())
        ts.append(Tensor(f"t{i}", names[i], cons, q * (i + 1), dq * (i + 1)))
    ts.append(Tensor("out", names[-1], (None,), q, dq))
    return names, Conversions(ts)


def test_conversions_scalar_and_vectorised_agree():
    names, conv_ = _chain()
    idx = conv_.indexed(names)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        is8 = rng.random(len(names)) < 0.5
        bits = {n: 8 if b else 32 for n, b in zip(names, is8)}
        want = _scalar_cost(conv_, bits)
        assert conv_.cost(bits) == pytest.approx(want)
        assert idx.cost(is8) == pytest.approx(want)
        for n in names:      # flip_delta against two full costs
            flip = dict(bits, **{n: 40 - bits[n]})
            assert conv_.flip_delta(bits, n, flip[n]) == pytest.approx(
                _scalar_cost(conv_, flip) - want)
        seen.add(want)
    assert conv_.cost({n: 32 for n in names}) == 0.0
    assert len(seen) > 5        # the cost really depends on the assignment


def _problem(n=5, speed8=0.5, q=7.0, dq=5.0, proxy=None, floor=None):
    names, conv_ = _chain(n, q=q, dq=dq)
    specs = [conv(nm, i) for i, nm in enumerate(names)]
    table = CostTable()
    for s in specs:
        table.put(T, s.shape_key, DENSE.key, Measurement(100.0))
        table.put(T, s.shape_key, FP32.key, Measurement(50.0))
        table.put(T, s.shape_key, INT8.key, Measurement(50.0 * speed8))
        table.put(T, s.shape_key, D8.key, Measurement(100.0 * speed8))
    cands = {s.name: [DENSE, FP32, INT8, D8] for s in specs}
    if proxy is None:
        proxy = TableProxy({s.name: {FP32.key: 0.9, INT8.key: 0.89, D8.key: 0.999}
                            for s in specs})
    return Problem(T, specs, cands, table, proxy, Budget(sparsity=0.5, min_proxy=floor),
                   conversions=conv_)


def test_problem_latency_adds_the_conversions_and_search_sees_the_same():
    p = _problem()
    a = {n: (INT8 if i % 2 else FP32) for i, n in enumerate(p.names)}
    layers = sum(p.layer_latency(n, c) for n, c in a.items())
    assert p.latency(a) == pytest.approx(layers + p.conversions.cost_of(a))
    assert p.conversions.cost_of(a) > 0
    space = GenomeSpace(p)
    rng = np.random.default_rng(1)
    for _ in range(50):
        g = space.random(rng)
        assert space.sums(g)[0] == pytest.approx(p.latency(space.decode(g)))
    plan = p.to_plan(a, "test")
    assert [c.bits for c in plan.choices] == [a[n].bits for n in p.names]
    assert plan.meta["conversions_us"] == pytest.approx(p.conversions.cost_of(a))


def _brute(p: Problem):
    best = None
    for combo in itertools.product(*[p.allowed(n) for n in p.names]):
        a = dict(zip(p.names, combo))
        if p.violations(a):
            continue
        key = (p.latency(a), -p.sparsity(a))
        if best is None or key < best[0]:
            best = (key, a)
    return best


@pytest.mark.parametrize("q", [1.0, 30.0, 400.0])
def test_search_reaches_the_brute_force_optimum_with_bits(q):
    p = _problem(n=5, q=q, dq=q)
    (lat, _), _ = _brute(p)
    plan = EvolutionMapper(seed_plans=False, time_budget=20, generations=300, seed=0).map(p)
    assert plan.meta["feasible"]
    assert plan.meta["predicted"]["latency_us"] == pytest.approx(lat)


def test_rule_int8_flips_where_it_pays_and_says_why_not():
    cheap = RuleMapper().map(_problem(q=1.0, dq=1.0))
    bits = {c.layer: c.bits for c in cheap.choices}
    # the last layer stays fp32 (the ends rule), the first (not sensitive) and middle ones int8
    assert bits["l4"] == 32 and all(bits[n] == 8 for n in ("l0", "l1", "l2", "l3"))
    assert "last layer stays fp32" in cheap["l4"].reason and "rule int8" in cheap["l2"].reason
    first = RuleMapper(RuleConfig(int8_first=False)).map(_problem(q=1.0, dq=1.0))
    assert first["l0"].bits == 32 and "first layer stays fp32" in first["l0"].reason
    assert all(first[n].bits == 8 for n in ("l1", "l2", "l3"))
    ends = RuleMapper(RuleConfig(int8_ends=True)).map(_problem(q=1.0, dq=1.0))
    assert all(c.bits == 8 for c in ends.choices)
    # conversions dearer than anything int8 saves: nothing flips, and the reason says so
    dear = RuleMapper().map(_problem(q=1e4, dq=1e4))
    assert all(c.bits == 32 for c in dear.choices)
    assert "conversions cost more" in dear["l2"].reason
    assert dear.meta["predicted"]["latency_us"] <= cheap.meta["dense"]["latency_us"]


def test_rule_int8_keeps_a_sensitive_layer_fp32_and_the_floor():
    names = [f"l{i}" for i in range(5)]
    table = {n: {FP32.key: 0.9, INT8.key: 0.9, D8.key: 1.0} for n in names}
    table["l2"][INT8.key] = 0.5                       # l2 hates int8
    p = _problem(q=1.0, dq=1.0, proxy=TableProxy(table))
    plan = RuleMapper().map(p)
    assert plan["l2"].bits == 32 and "sensitive" in plan["l2"].reason
    table["l0"][INT8.key] = 0.5                       # a sensitive first layer stays fp32 too
    plan0 = RuleMapper().map(_problem(q=1.0, dq=1.0, proxy=TableProxy(table)))
    assert plan0["l0"].bits == 32 and "sensitive" in plan0["l0"].reason
    assert plan["l1"].bits == 8 and plan["l3"].bits == 8
    # a floor the int8 layers' proxy loss would break is kept
    table2 = {n: {FP32.key: 0.9, INT8.key: 0.85, D8.key: 1.0} for n in names}
    p2 = _problem(q=1.0, dq=1.0, proxy=TableProxy(table2), floor=0.895)
    plan2 = RuleMapper().map(p2)
    assert plan2.meta["feasible"], plan2.meta["violations"]
    assert p2.proxy({c.layer: Candidate.from_key(_key(c)) for c in plan2.choices}) >= 0.895 - 1e-9


def _key(choice) -> str:
    if choice.scheme == "dense":
        return "dense+int8" if choice.bits == 8 else "dense"
    c = Candidate(choice.scheme, choice.block, choice.sparsity, choice.backend,
                  tuple(sorted(choice.options.items())), choice.bits)
    return c.key


def test_rule_config_int8_flags_must_be_bools():
    for flag in ("int8", "int8_first", "int8_ends"):
        with pytest.raises(ValueError, match=f"RuleConfig.{flag} must be True or False"):
            RuleConfig(**{flag: "no"})
