"""`bench corpus` on its smallest models: every step runs and is checked against the masked
torch model, counts and reasons are recorded, a failing step is recorded, not raised."""
import argparse
import json

import pytest
import torch

pytest.importorskip("transformers")
from engine.bench import corpus  # noqa: E402


def _args(**kw):
    return argparse.Namespace(sparsity=kw.get("sparsity", 0.8), measure=False)


def test_corpus_row_for_a_decoder_step(tmp_path):
    row = corpus.run_model("gpt2_decode", _args(), tmp_path, None)
    assert row["model_unchanged"] is True
    assert row["pruned"] == row["listed"] - 1        # the tied LM head stays dense
    assert any("tied" in k or "shared" in k for k in row["kept_dense"])
    assert row["err_opt"] < 1e-4 and row["err_artifact"] < 1e-4
    assert (tmp_path / "artifacts" / "gpt2_decode" / "manifest.json").is_file()
    text = corpus.table([row])
    assert "| gpt2_decode |" in text and "not measured" in text


def test_failing_step_is_recorded(tmp_path, monkeypatch):
    import engine
    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(engine.pipeline.result.OptimizedModel, "save", boom)
    row = corpus.run_model("lstm", _args(), tmp_path, None)
    assert row["save"].startswith("FAIL RuntimeError: disk full")
    assert "err_artifact" not in row and row["err_opt"] < 1e-4
    json.dumps(row, default=str)


def test_rel_err_flags_a_wrong_output():
    ref = {"a": torch.ones(3), "b": torch.arange(3)}
    assert corpus._rel_err({"a": torch.ones(3), "b": torch.arange(3)}, ref) == 0.0
    assert corpus._rel_err({"a": torch.ones(3) * 1.5, "b": torch.arange(3)}, ref) == pytest.approx(0.5)
    assert corpus._rel_err({"a": torch.ones(3), "b": torch.arange(3) + 1}, ref) == 1.0
    with pytest.raises(AssertionError, match="shape"):
        corpus._rel_err({"a": torch.ones(4), "b": torch.arange(3)}, ref)
