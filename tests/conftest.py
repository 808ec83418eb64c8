"""Shared fixtures: small real models whose neurons actually fire."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import neucodex as nc


def calibrate_bn(model: nc.Backbone, size: int = 32, batch: int = 8) -> nc.Backbone:
    """Fill BN running statistics from one training-mode pass, then switch to eval.

    A fresh model's running stats (mean 0, var 1) leave every LIF silent in eval mode; real
    statistics give realistic firing rates, so the equality tests compare real spike trains.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average: one pass sets the statistics
    mode = model.step_mode
    model.train().set_step_mode("m" if model.spiking else "s")
    with torch.no_grad():
        model(torch.rand(batch, model.in_channels, size, size))
    model.reset_state()
    return model.eval().set_step_mode(mode)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
