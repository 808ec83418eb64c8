"""Building blocks shared by every backbone: neurons, tdBN, conv units, input encoding.

Every module here is step-mode aware (SpikingJelly's convention): in ``'s'`` mode it takes one
timestep ``[B, ...]`` and keeps neuron state; in ``'m'`` mode it takes ``[T, B, ...]``.
The DNN twin is built from the same units with ``spiking=False``: ReLU and plain BN, no T.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from spikingjelly.activation_based import base, layer, surrogate
from torch import nn

from ..errors import InvalidArgumentError
from .lif import FusedLIFNode

_SURROGATES = {
    "atan": surrogate.ATan,
    "sigmoid": surrogate.Sigmoid,
    "erf": surrogate.Erf,
}


@dataclass(frozen=True)
class NeuronConfig:
    """How each unit normalises and fires; ``spiking=False`` gives the DNN twin."""

    spiking: bool = True
    tau: float = 2.0
    v_threshold: float = 1.0
    surrogate: str = "atan"
    detach_reset: bool = True
    norm: str = "tdbn"  # "tdbn" (SpikeBottleNet §3.3) or "bn"

    def __post_init__(self) -> None:
        if self.surrogate not in _SURROGATES:
            raise InvalidArgumentError(f"unknown surrogate {self.surrogate!r}; choose from {sorted(_SURROGATES)}")
        if self.norm not in ("tdbn", "bn"):
            raise InvalidArgumentError(f"unknown norm {self.norm!r}; choose 'tdbn' or 'bn'")
        if self.tau <= 1.0:
            raise InvalidArgumentError(f"tau must be > 1 (got {self.tau})")

    def to_dict(self) -> dict:
        return asdict(self)


class TDBatchNorm2d(layer.ThresholdDependentBatchNorm2d):
    """SpikingJelly's tdBN, made to run single-step too.

    tdBN normalises over time and batch together, which needs ``'m'`` mode while training.
    In eval mode it is an affine map with running statistics, so one timestep at a time gives
    exactly the multi-step result; that is what the streaming runtime relies on.
    """

    def supported_step_mode(self) -> tuple[str, ...]:
        return ("s", "m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return self.super_forward(x)
        return super().forward(x)


def make_neuron(cfg: NeuronConfig) -> nn.Module:
    """Iterative LIF (SpikeBottleNet §3.2, hard reset to 0) or ReLU for the DNN twin."""
    if not cfg.spiking:
        return nn.ReLU(inplace=False)
    return FusedLIFNode(  # SpikingJelly's LIFNode, multi-step fused on the CPU where it can be
        tau=cfg.tau,
        v_threshold=cfg.v_threshold,
        v_reset=0.0,
        surrogate_function=_SURROGATES[cfg.surrogate](),
        detach_reset=cfg.detach_reset,
    )


def make_norm(channels: int, cfg: NeuronConfig, alpha: float = 1.0) -> nn.Module:
    """tdBN with weight ``alpha * V_th`` (Zheng et al. 2021), or plain BN (always for the DNN)."""
    if cfg.spiking and cfg.norm == "tdbn":
        return TDBatchNorm2d(alpha=alpha, v_th=cfg.v_threshold, num_features=channels)
    return layer.BatchNorm2d(channels)


def conv_norm(
    in_ch: int, out_ch: int, cfg: NeuronConfig, kernel: int = 3, stride: int = 1, alpha: float = 1.0
) -> nn.Sequential:
    """conv → norm, no activation (the last conv of a residual branch, or a shortcut)."""
    return nn.Sequential(
        layer.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
        make_norm(out_ch, cfg, alpha),
    )


def conv_unit(in_ch: int, out_ch: int, cfg: NeuronConfig, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """conv → norm → neuron: the basic unit of every backbone here."""
    seq = conv_norm(in_ch, out_ch, cfg, kernel, stride)
    seq.append(make_neuron(cfg))
    return seq


RESIDUAL_ALPHA = 1.0 / math.sqrt(2.0)
"""tdBN alpha for the two norms whose outputs are summed at a residual add (Zheng et al.)."""


class InputEncoder(nn.Module, base.StepModule):
    """Direct encoding (SpikeBottleNet §3.4): a static image is fed at every timestep.

    Multi-step: ``[B, C, H, W]`` is repeated to ``[T, B, C, H, W]``; event frames that already
    are ``[T, B, C, H, W]`` pass through. Single-step: the caller feeds one ``[B, C, H, W]`` per
    step (the same image, or event frame t). The DNN twin has no time: event frames are averaged.
    """

    def __init__(self, T: int, spiking: bool) -> None:
        super().__init__()
        if T < 1:
            raise InvalidArgumentError(f"T must be >= 1 (got {T})")
        self.T = T
        self.spiking = spiking
        self.step_mode = "s"

    def supported_step_mode(self) -> tuple[str, ...]:
        return ("s", "m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.spiking:
            return x.mean(0) if x.dim() == 5 else x
        if self.step_mode == "m" and x.dim() == 4:
            return x.unsqueeze(0).expand(self.T, *x.shape).contiguous()
        return x

    def extra_repr(self) -> str:
        return f"T={self.T}, spiking={self.spiking}, step_mode={self.step_mode}"


def make_head(in_features: int, num_classes: int) -> nn.Sequential:
    """Global average pool → flatten → fully connected; per-timestep logits."""
    return nn.Sequential(
        layer.AdaptiveAvgPool2d((1, 1)),
        layer.Flatten(),
        layer.Linear(in_features, num_classes),
    )
