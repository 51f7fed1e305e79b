"""mapping.Plan: JSON round trip, atomic save, validation."""
import json

import pytest

from mapping import Choice, Plan


def _plan():
    return Plan("host", [Choice("a", "block", (4, 1), 0.8, "native", "f32_spmm_4x96__avx512",
                                10.0, 30.0, "faster"),
                         Choice("b", reason="depthwise")], {"engine": "x"})


def test_json_round_trip(tmp_path):
    p = _plan()
    q = Plan.from_json(p.to_json())
    assert q.to_dict() == p.to_dict()
    assert q["a"].block == (4, 1) and q["a"].speedup == pytest.approx(3.0)
    path = tmp_path / "plan.json"
    p.save(path)
    assert Plan.load(path).to_dict() == p.to_dict()
    assert not list(tmp_path.glob("*.tmp"))


def test_pruned_and_lookup():
    p = _plan()
    assert [c.layer for c in p.pruned] == ["a"]
    assert "b" in p and "z" not in p
    with pytest.raises(KeyError, match="'z'"):
        p["z"]


def test_rejects_duplicates_unknown_fields_and_formats():
    with pytest.raises(ValueError, match="more than once"):
        Plan("host", [Choice("a"), Choice("a")])
    d = _plan().to_dict()
    d["choices"][0]["colour"] = "red"
    with pytest.raises(ValueError, match="colour"):
        Plan.from_dict(d)
    d = _plan().to_dict()
    d["format"] = 99
    with pytest.raises(ValueError, match="format"):
        Plan.from_json(json.dumps(d))


def test_mapping_does_not_import_engine():
    import subprocess
    import sys
    code = "import sys, mapping; assert 'engine' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_other_layers_round_trip_and_table():
    """The weight layers the choices do not cover (meta["other_layers"]) survive JSON and are
    listed by table() with kind, shape, parameter count and reason; no section without them."""
    lstm = {"layer": "enc.lstm", "kind": "LSTM", "weight_shape": [128, 32],
            "weights": {"weight_ih_l0": [128, 32], "weight_hh_l0": [128, 32]},
            "params": 8192, "reason": "LSTM: no sparse recurrent kernel yet"}
    plan = Plan("host", [Choice("fc", "block", (4, 1), 0.8, "native")],
                {"other_layers": [lstm]})
    back = Plan.from_json(plan.to_json())
    assert back.other_layers == [lstm]
    row = next(ln for ln in back.table().splitlines() if ln.startswith("enc.lstm"))
    assert "LSTM" in row and "128x32 (+1)" in row and "8192" in row and lstm["reason"] in row
    assert "other weight layer" not in Plan("host", [Choice("fc")]).table()
