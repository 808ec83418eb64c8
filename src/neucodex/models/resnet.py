"""CIFAR-style spiking ResNets (Zheng et al. 2021 / SpikeBottleNet) and their DNN twins.

Residual add: each block computes ``LIF(norm(conv(...)) + shortcut(x))`` — the membrane inputs
of the residual branch and the shortcut are summed *before* the block's last neuron (tdBN with
alpha = 1/sqrt(2) on both, as Zheng et al.), so every block output stays a binary spike tensor.
That is what makes a cut after any residual block send 1 bit per neuron per timestep.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .backbone import Backbone, assemble
from .layers import (
    RESIDUAL_ALPHA,
    NeuronConfig,
    conv_norm,
    conv_unit,
    make_neuron,
)
from .registry import register_model


class _Residual(nn.Module):
    """``neuron(branch(x) + shortcut(x))``."""

    def __init__(self, branch: nn.Module, shortcut: nn.Module, cfg: NeuronConfig) -> None:
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.act = make_neuron(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.branch(x) + self.shortcut(x))


def _shortcut(in_ch: int, out_ch: int, stride: int, cfg: NeuronConfig) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return conv_norm(in_ch, out_ch, cfg, kernel=1, stride=stride, alpha=RESIDUAL_ALPHA)


class BasicBlock(_Residual):
    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int, cfg: NeuronConfig) -> None:
        branch = nn.Sequential(
            conv_unit(in_ch, planes, cfg, stride=stride),
            conv_norm(planes, planes, cfg, alpha=RESIDUAL_ALPHA),
        )
        super().__init__(branch, _shortcut(in_ch, planes, stride, cfg), cfg)


class Bottleneck(_Residual):
    """1x1 → 3x3 (stride here) → 1x1 x4: three conv-tdBN-LIF units as SpikeBottleNet §3.1."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int, cfg: NeuronConfig) -> None:
        out = planes * self.expansion
        branch = nn.Sequential(
            conv_unit(in_ch, planes, cfg, kernel=1),
            conv_unit(planes, planes, cfg, stride=stride),
            conv_norm(planes, out, cfg, kernel=1, alpha=RESIDUAL_ALPHA),
        )
        super().__init__(branch, _shortcut(in_ch, out, stride, cfg), cfg)


def build_resnet(
    arch: str,
    block: type[BasicBlock] | type[Bottleneck],
    layers: list[int],
    *,
    widths: tuple[int, ...] = (64, 128, 256, 512),
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    T: int = 4,
    neuron_cfg: NeuronConfig | None = None,
    spiking: bool = True,
    **neuron_kw,
) -> Backbone:
    """3x3 stem at stride 1, no max-pool; stage i has ``layers[i]`` blocks of ``widths[i]``.

    Split points are the residual blocks in order, ``rb1 … rbN`` (ResNet-50: RB1…RB16 of
    SpikeBottleNet; ResNet-18: 8).
    """
    cfg = neuron_cfg or NeuronConfig(spiking=spiking, **neuron_kw)
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    stages["stem"] = conv_unit(in_channels, widths[0], cfg)
    in_ch, n = widths[0], 0
    for i, (planes, count) in enumerate(zip(widths, layers, strict=True)):
        for j in range(count):
            n += 1
            stride = 2 if (i > 0 and j == 0) else 1
            stages[f"rb{n}"] = block(in_ch, planes, stride, cfg)
            in_ch = planes * block.expansion
    return assemble(
        arch,
        cfg,
        stages,
        [f"rb{k}" for k in range(1, n + 1)],
        in_ch,
        T=T,
        in_channels=in_channels,
        input_size=input_size,
        num_classes=num_classes,
    )


# --- entry points (create_model names) ------------------------------------------------------


@register_model
def resnet18(**kw) -> Backbone:
    return build_resnet("resnet18", BasicBlock, [2, 2, 2, 2], **kw)


@register_model
def resnet18_half(**kw) -> Backbone:
    """ResNet-18 at half width (32/64/128/256): the CIFAR-10 model a 2-core CPU can train."""
    kw.setdefault("widths", (32, 64, 128, 256))
    return build_resnet("resnet18-half", BasicBlock, [2, 2, 2, 2], **kw)


@register_model
def resnet34(**kw) -> Backbone:
    return build_resnet("resnet34", BasicBlock, [3, 4, 6, 3], **kw)


@register_model
def resnet50(**kw) -> Backbone:
    return build_resnet("resnet50", Bottleneck, [3, 4, 6, 3], **kw)


@register_model
def resnet_tiny(**kw) -> Backbone:
    """Four basic blocks of 16/32/64/128 channels: for CPU minutes on small inputs."""
    kw.setdefault("widths", (16, 32, 64, 128))
    return build_resnet("resnet-tiny", BasicBlock, [1, 1, 1, 1], **kw)
