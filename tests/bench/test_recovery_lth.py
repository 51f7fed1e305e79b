"""The recovery experiment's Structure-LTH column (engine.bench.recovery, method "lth"): its
training budget is the one the table states, it is a valid lth run, and the table shows its
accuracy and its own measured speedup."""
import pytest

from engine.bench import recovery
from engine.train import PruneTrainer, TrainConfig, uniform_targets
from engine.train.lth import LthTrainer, phase_ends


@pytest.mark.parametrize("epochs", [2, 12])
def test_lth_budget_is_the_stated_one_and_valid(epochs):
    ft = recovery._tune_for(dict(epochs=epochs, lr=1e-3, prune_epochs=epochs // 2,
                                 lr_schedule="cosine"), "lth")
    cfg = TrainConfig(**ft)
    assert cfg.epochs == recovery.lth_epochs(epochs) == 4 * (epochs // 2) + epochs
    ends = phase_ends(cfg)              # a dense phase and IMP_ROUNDS rounds, then `epochs`
    assert len(ends) == recovery.IMP_ROUNDS + 1 and cfg.epochs - ends[-1] == epochs
    net = recovery.DigitsNet()
    t = PruneTrainer(net, uniform_targets(net, "block", (4, 1), 0.8), cfg)
    assert isinstance(t, LthTrainer)
    assert recovery._tune_for(dict(epochs=epochs), "admm") == dict(epochs=epochs, method="admm")


def test_table_shows_the_lth_epochs_and_speedup():
    row = {"sparsity": 0.8, "dense": 0.97, "gradual": 0.965, "lth": 0.96, "mapper": 0.967,
           "mapper_sparsity_of_pruned_layers": 0.8, "scratch": 0.965,
           "ms": {"dense": 2.0, "uniform": 1.0, "mapper": 0.8, "lth": 1.25}}
    t = recovery.table({"methods": ["gradual", "lth"], "epochs": 12, "dense": 0.97,
                        "rows": [row]})
    head, _, cells = t.splitlines()[:3]
    assert "Structure-LTH 4x1 (IMP + regroup) (36 epochs)" in head
    assert "speedup vs dense (gradual / lth / mapper)" in head
    assert "96.00%" in cells and "2.00x / 1.60x / 2.50x" in cells
