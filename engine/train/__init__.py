"""Pruning-aware training: keep a pruned model as accurate as the dense one (issue P4).

    from engine.train import PruneTrainer, TrainConfig
    t = PruneTrainer(model, targets={"layer1.0.conv1": Candidate("block", (4, 1), 0.8), ...},
                     config=TrainConfig(epochs=10, lr=1e-3, checkpoint="ckpt.pt"))
    t.fit(train_batches, loss_fn)      # gradual pruning + masked fine-tuning, resumable
    t.model                            # pruned weights, masks hold exactly

Targets come from a Plan (`targets_from_plan(plan)`: every pruned Choice's scheme, block and
sparsity) or from one scheme for every layer (`uniform_targets`). See trainer.py.
"""
from .trainer import (PruneTrainer, TrainConfig, cubic_sparsity, targets_from_plan,
                      train_from_scratch, uniform_targets)

__all__ = ["PruneTrainer", "TrainConfig", "cubic_sparsity", "targets_from_plan",
           "train_from_scratch", "uniform_targets"]
