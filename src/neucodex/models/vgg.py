"""CIFAR-style spiking VGG with batch norm (and the DNN twin).

Each conv unit is conv → tdBN/BN → LIF/ReLU; where the configuration pools after a unit the
2x2 max-pool belongs to that unit, so the tensor crossing a cut there is already pooled (the max
of binary spikes is still binary).
"""

from __future__ import annotations

from collections import OrderedDict

from spikingjelly.activation_based import layer
from torch import nn

from ..errors import InvalidArgumentError
from .backbone import Backbone, assemble
from .layers import NeuronConfig, conv_unit
from .registry import register_model

VGG_CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def build_vgg(
    arch: str,
    cfg_list: list[int | str],
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    T: int = 4,
    neuron_cfg: NeuronConfig | None = None,
    spiking: bool = True,
    **neuron_kw,
) -> Backbone:
    """Split points ``conv1 … convN``, one after each conv unit (and its pool, if any)."""
    cfg = neuron_cfg or NeuronConfig(spiking=spiking, **neuron_kw)
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    in_ch, n = in_channels, 0
    for item in cfg_list:
        if item == "M":
            if n == 0:
                raise InvalidArgumentError("a VGG configuration cannot start with a pool")
            stages[f"conv{n}"].append(layer.MaxPool2d(2, 2))
            continue
        n += 1
        stages[f"conv{n}"] = conv_unit(in_ch, int(item), cfg)
        in_ch = int(item)
    return assemble(
        arch,
        cfg,
        stages,
        [f"conv{k}" for k in range(1, n + 1)],
        in_ch,
        T=T,
        in_channels=in_channels,
        input_size=input_size,
        num_classes=num_classes,
    )


# --- entry points (create_model names) ------------------------------------------------------


@register_model
def vgg11(**kw) -> Backbone:
    return build_vgg("vgg11", VGG_CFGS["vgg11"], **kw)


@register_model
def vgg16(**kw) -> Backbone:
    return build_vgg("vgg16", VGG_CFGS["vgg16"], **kw)


@register_model
def vgg11_half(**kw) -> Backbone:
    """VGG-11 at half width (32 … 256 channels): the event models' backbone on a 2-core CPU."""
    half = [c if c == "M" else int(c) // 2 for c in VGG_CFGS["vgg11"]]
    return build_vgg("vgg11-half", half, **kw)


@register_model
def vgg16_half(**kw) -> Backbone:
    """VGG-16 at half width (32 … 256 channels): the CIFAR-10 VGG a 2-core CPU can train."""
    half = [c if c == "M" else int(c) // 2 for c in VGG_CFGS["vgg16"]]
    return build_vgg("vgg16-half", half, **kw)


@register_model
def vgg_tiny(widths: tuple[int, int, int] = (16, 32, 64), **kw) -> Backbone:
    """Three conv units (default 16/32/64) with two pools: the tiny preset's backbone."""
    a, b, c = widths
    return build_vgg("vgg-tiny", [a, "M", b, "M", c], **kw)
