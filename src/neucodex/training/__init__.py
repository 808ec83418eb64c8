"""Training: pretraining a backbone and compression-aware fine-tuning with a bottleneck.

SpikeBottleNet §3.6's two steps (:mod:`.steps`): train the backbone (SNN with surrogate-gradient
BPTT, or its DNN twin), then insert the bottleneck at a split point and fine-tune the whole model
together. One job per module: losses, hooks (what a step reads beside the output), optim
(optimiser, schedule), norms (precise BN), state (curves, resume), the loop, start (init, freeze,
warm-up), results. Deterministic for a seed; resumable per epoch; data-parallel under ``torchrun``
(DDP, gloo on CPU, NCCL on GPU); bf16 autocast on GPU.
"""

from .env import data_meta, distributed, seed_everything, use_amp
from .hooks import BlockTaps, CodeFiring, CodeRate, EdgeSpikes
from .loop import fit
from .losses import check_timestep_weights, classification_loss, distillation_loss
from .norms import precise_norms, recalibrate_norms
from .optim import make_optimizer, make_schedule
from .results import FinetuneResult, TrainResult, collapse_warning
from .start import continue_from, freeze_head, freeze_tail, init_from, warm_bottleneck
from .steps import finetune, pretrain, scan_init_scale

__all__ = [
    "BlockTaps",
    "CodeFiring",
    "CodeRate",
    "EdgeSpikes",
    "FinetuneResult",
    "TrainResult",
    "check_timestep_weights",
    "classification_loss",
    "collapse_warning",
    "continue_from",
    "data_meta",
    "distillation_loss",
    "distributed",
    "finetune",
    "fit",
    "freeze_head",
    "freeze_tail",
    "init_from",
    "make_optimizer",
    "make_schedule",
    "precise_norms",
    "pretrain",
    "recalibrate_norms",
    "scan_init_scale",
    "seed_everything",
    "use_amp",
    "warm_bottleneck",
]
