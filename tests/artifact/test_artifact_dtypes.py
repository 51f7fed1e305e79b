"""The C++ runner (examples/cpp/run_artifact) takes an artifact's int64 / bool inputs: its
deterministic inputs are engine.artifact.deterministic_input's, raw --input files of the
manifest's dtype are read as such, and its outputs (every tensor of a dict output, in the
manifest's order) match the torch model on the same inputs; a file of the wrong size for a
dtype is a usage error naming the input."""
import subprocess

import numpy as np
import torch
from torch import nn

import engine
from engine.artifact import deterministic_input


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(16, 8)
        self.fc = nn.Linear(8, 8)

    def forward(self, ids, mask):
        h = self.fc(self.emb(ids)) * mask.unsqueeze(-1).float()
        return {"h": h, "pred": h.argmax(-1)}


def _run(cmd):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=180)


def test_runner_takes_int64_and_bool_inputs(host_runner, tmp_path):
    torch.manual_seed(0)
    model = Tagger().eval()
    ids, mask = torch.randint(0, 16, (1, 6)), torch.rand(1, 6) > 0.5
    opt = engine.optimize(model, (ids, mask), sparsity=0.5, measure=False, progress=False)
    art = opt.save(tmp_path / "art")
    d_ids = torch.from_numpy(deterministic_input((1, 6), "int64"))
    d_mask = torch.from_numpy(deterministic_input((1, 6), "bool"))
    assert d_mask.dtype == torch.bool and 0 < int(d_mask.sum()) < 6
    with torch.no_grad():
        ref = opt.pruned_model(d_ids, d_mask)
    r = _run([host_runner, art, "--output", tmp_path / "out.bin"])
    assert r.returncode == 0, r.stderr
    assert "output 0 'h' shape (1, 6, 8) float32" in r.stdout
    assert "output 1 'pred' shape (1, 6) int64" in r.stdout
    raw = (tmp_path / "out.bin").read_bytes()
    h = np.frombuffer(raw[:48 * 4], np.float32).reshape(1, 6, 8)
    pred = np.frombuffer(raw[48 * 4:], np.int64).reshape(1, 6)
    assert np.abs(h - ref["h"].numpy()).max() < 1e-5
    assert (pred == ref["pred"].numpy()).all()

    # raw inputs of the manifest's dtypes; a file sized for another dtype is refused by name
    ids.numpy().tofile(tmp_path / "ids.bin")
    mask.numpy().tofile(tmp_path / "mask.bin")
    r = _run([host_runner, art, "--input", tmp_path / "ids.bin", "--input", tmp_path / "mask.bin",
              "--output", tmp_path / "out2.bin"])
    assert r.returncode == 0, r.stderr
    with torch.no_grad():
        ref2 = opt.pruned_model(ids, mask)
    pred2 = np.frombuffer((tmp_path / "out2.bin").read_bytes()[48 * 4:], np.int64)
    assert (pred2.reshape(1, 6) == ref2["pred"].numpy()).all()
    mask.numpy().astype(np.int64).tofile(tmp_path / "mask64.bin")
    r = _run([host_runner, art, "--input", tmp_path / "ids.bin", "--input",
              tmp_path / "mask64.bin"])
    assert r.returncode == 2
    assert "input 'mask' bool needs 6" in r.stderr, r.stderr
