"""Pruning-aware training: keep a pruned model as accurate as the dense one (issue P4),
quantization-aware training that keeps the pruning (train_qat, qat.py; issue P9), and
AutoBot's trained bottlenecks choosing filters under a FLOPs target (autobot, autobot.py).

    t = engine.train.PruneTrainer(
        model, targets={"layer1.0.conv1": Candidate("block", (4, 1), 0.8), ...},
        config=engine.train.TrainConfig(epochs=10, lr=1e-3, checkpoint="ckpt.pt"))
    t.fit(train_batches, loss_fn)      # gradual pruning + masked fine-tuning, resumable
    t.model                            # pruned weights, masks hold exactly

Methods (TrainConfig.method), one trainer class each over the shared loop of trainer.py:
"gradual" (default, gradual.py), "admm" (admm.py), "lasso" (reweighted group lasso, lasso.py),
"soft" (SFP, soft.py), "lth" (Structure-LTH: IMP with rewinding, the masks then regrouped
onto the targets' blocks, lth.py), "rigl" / "set" (dynamic sparse training: sparse from the
start, units dropped by magnitude and regrown by gradient / at random, rigl.py). Targets are
mapping.Candidate or engine.train.Target values;
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
from .lth import LthTrainer
from .rigl import RigLTrainer, SetTrainer
from .scratch import train_from_scratch
from .qat import export_qat, train_qat
from .autobot import AutoBotConfig, AutoBotResult, autobot

__all__ = ["PruneTrainer", "Target", "TrainConfig", "cubic_sparsity", "export_qat",
           "targets_from_plan", "train_from_scratch", "train_qat", "uniform_targets", "GradualTrainer", "SoftTrainer",
           "AdmmTrainer", "LassoTrainer", "LthTrainer"]
__all__ += ["AutoBotConfig", "AutoBotResult", "autobot"]   # AutoBot (autobot.py)
__all__ += ["RigLTrainer", "SetTrainer"]   # dynamic sparse training (rigl.py)
