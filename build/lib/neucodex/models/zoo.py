"""The registered model entry points."""

from __future__ import annotations

from .backbone import Backbone
from .registry import register_model
from .resnet import BasicBlock, Bottleneck, build_resnet
from .vgg import VGG_CFGS, build_vgg


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


@register_model
def vgg11(**kw) -> Backbone:
    return build_vgg("vgg11", VGG_CFGS["vgg11"], **kw)


@register_model
def vgg16(**kw) -> Backbone:
    return build_vgg("vgg16", VGG_CFGS["vgg16"], **kw)


@register_model
def vgg_tiny(widths: tuple[int, int, int] = (16, 32, 64), **kw) -> Backbone:
    """Three conv units (default 16/32/64) with two pools: the tiny preset's backbone."""
    a, b, c = widths
    return build_vgg("vgg-tiny", [a, "M", b, "M", c], **kw)
