"""Pruning-aware training: keep a pruned model as accurate as the dense one (issue P4), and
quantization-aware training that keeps the pruning (train_qat, qat.py; issue P9).

    t = engine.train.PruneTrainer(
        model, targets={"layer1.0.conv1": Candidate("block", (4, 1), 0.8), ...},
        config=engine.train.TrainConfig(epochs=10, lr=1e-3, checkpoint="ckpt.pt"))
    t.fit(train_batches, loss_fn)      # gradual pruning + masked fine-tuning, resumable
    t.model                            # pruned weights, masks hold exactly

Methods (TrainConfig.method), one trainer class each over the shared loop of trainer.py:
"gradual" (default, gradual.py), "admm" (admm.py), "lasso" (reweighted group lasso, lasso.py),
"soft" (SFP, soft.py). Targets are mapping.Candidate or engine.train.Target values;
Target("filter", sparsity=0.5) prunes whole output filters (with soft, Soft Filter Pruning), and
the filters' norm layers are zeroed with them so that engine's filter scheme can then remove
them exactly (filters.py). Targets come from a Plan (`targets_from_plan(plan)`: every pruned
Choice's scheme, block and sparsity) or from one scheme for every layer (`uniform_targets`).
"""
from .config import Target, TrainConfig
from .targets import targets_from_plan, uniform_targets
from .trainer import PruneTrainer
# the methods register themselves with PruneTrainer (PruneTrainer(...) picks by config.kind)
from .gradual import GradualTrainer, cubic_sparsity
from .soft import SoftTrainer
from .admm import AdmmTrainer
from .lasso import LassoTrainer
from .scratch import train_from_scratch
from .qat import export_qat, train_qat

__all__ = ["PruneTrainer", "Target", "TrainConfig", "cubic_sparsity", "export_qat",
           "targets_from_plan", "train_from_scratch", "train_qat", "uniform_targets", "GradualTrainer", "SoftTrainer",
           "AdmmTrainer", "LassoTrainer"]
