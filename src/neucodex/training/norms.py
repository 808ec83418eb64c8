"""Precise BN: the norms' running statistics re-estimated for the weights as they now are."""

from __future__ import annotations

import torch
from torch import nn

from ..evaluate import loader, to_model_input
from ..models import Backbone


@torch.no_grad()
def recalibrate_norms(model: Backbone, batches, samples: int) -> None:
    """Precise BN: replace every norm's running statistics by the exact average of the batch
    statistics over ``samples`` training samples, with the weights as they now are.

    Why: the moving averages (momentum 0.1) describe the weights of the last ~10 steps, and a
    newly inserted bottleneck's norms start from mean 0 / variance 1. After a short fine-tune the
    decoder's running variance can stay orders of magnitude above its input's, so in eval mode it
    barely fires and the model collapses to one class while training accuracy looks fine.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train().set_step_mode("m" if model.spiking else "s")
    seen = 0
    for x in batches:
        model(x)
        model.reset_state()
        seen += x.shape[1] if x.dim() == 5 else x.shape[0]
        if seen >= samples:
            break
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


def precise_norms(
    model: Backbone,
    train_ds,
    *,
    samples: int,
    batch_size: int,
    seed: int,
    workers: int,
    device: torch.device,
    amp: bool,
) -> None:
    """:func:`recalibrate_norms` on ``samples`` shuffled (augmented) training samples, under the
    run's autocast: the one routine the training loop and weight averaging both use."""
    stats = loader(train_ds, batch_size, True, seed, workers)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        recalibrate_norms(model, (to_model_input(x, device) for x, _ in stats), samples)
