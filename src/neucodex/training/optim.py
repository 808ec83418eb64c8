"""The optimiser and its learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..bottleneck import CoInferenceModel
from ..config import OptimConfig
from ..errors import NeucodexError


def make_optimizer(model: nn.Module, oc: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser over trainable weights; a new bottleneck's learn ``bottleneck_lr_scale`` × faster
    (they start from random while everything around them is trained)."""
    params: list = [p for p in model.parameters() if p.requires_grad]
    if isinstance(model, CoInferenceModel) and oc.bottleneck_lr_scale != 1.0:
        new = {id(p) for name in ("encoder", "decoder") for p in getattr(model.stages, name).parameters()}
        params = [
            {"params": [p for p in params if id(p) not in new]},
            {"params": [p for p in params if id(p) in new], "lr": oc.lr * oc.bottleneck_lr_scale},
        ]
    if oc.name == "sgd":
        return torch.optim.SGD(params, lr=oc.lr, momentum=oc.momentum, weight_decay=oc.weight_decay, nesterov=True)
    if oc.name == "adamw":
        return torch.optim.AdamW(params, lr=oc.lr, weight_decay=oc.weight_decay)
    raise NeucodexError(f"unknown optimiser {oc.name!r}; choose adamw or sgd")


def make_schedule(opt: torch.optim.Optimizer, oc: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine to zero over the remaining epochs (stepped per epoch)."""

    def factor(epoch: int) -> float:
        if epoch < oc.warmup_epochs:
            return (epoch + 1) / oc.warmup_epochs
        span = max(1, oc.epochs - oc.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * (epoch - oc.warmup_epochs) / span))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
