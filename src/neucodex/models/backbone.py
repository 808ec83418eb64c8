"""The container every model is: an ordered chain of named stages that can be cut between units."""

from __future__ import annotations

from collections import OrderedDict

import torch
from spikingjelly.activation_based import base, functional
from torch import nn

from ..errors import InvalidArgumentError
from .layers import NeuronConfig


class Stages(nn.Module, base.StepModule):
    """An ordered chain of named stages, runnable in both step modes.

    Used for a whole backbone and for each side of a cut; the sides share the modules (and so
    the weights and the neuron state) of the backbone they were cut from.
    """

    def __init__(self, stages: OrderedDict[str, nn.Module], spiking: bool, T: int) -> None:
        super().__init__()
        self.stages = nn.Sequential(stages)
        self.spiking = spiking
        self.T = T
        self.step_mode = "s"

    def supported_step_mode(self) -> tuple[str, ...]:
        return ("s", "m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def set_step_mode(self, mode: str) -> Stages:
        """``'s'``: one ``[B, ...]`` timestep per call, state kept; ``'m'``: ``[T, B, ...]``."""
        if mode not in ("s", "m"):
            raise InvalidArgumentError(f"step mode must be 's' or 'm' (got {mode!r})")
        if self.spiking:
            functional.set_step_mode(self, mode)
        self.step_mode = mode
        return self

    def reset_state(self) -> None:
        """Clear neuron state between samples (no-op for the DNN twin)."""
        if self.spiking:
            functional.reset_net(self)

    def names(self) -> list[str]:
        return list(self.stages._modules)

    def slice(self, start: int, stop: int | None = None) -> Stages:
        """Stages ``start:stop`` as a new chain sharing these modules."""
        items = list(self.stages._modules.items())[start:stop]
        part = Stages(OrderedDict(items), self.spiking, self.T)
        part.step_mode = self.step_mode
        return part


class Backbone(Stages):
    """A classifier built as ``input → stem → unit_1 … unit_N → head``.

    The cut points sit after each unit (``split_points``). Output: per-timestep logits,
    ``[T, B, K]`` multi-step or ``[B, K]`` single-step; the DNN twin gives ``[B, K]``.
    """

    def __init__(
        self,
        stages: OrderedDict[str, nn.Module],
        split_points: list[str],
        *,
        arch: str,
        neuron_cfg: NeuronConfig,
        T: int,
        in_channels: int,
        input_size: int,
        num_classes: int,
    ) -> None:
        super().__init__(stages, neuron_cfg.spiking, T)
        self.neuron_cfg = neuron_cfg
        unknown = [p for p in split_points if p not in stages]
        if unknown:
            raise InvalidArgumentError(f"split points {unknown} are not stages of {arch}")
        self.split_points = list(split_points)
        self.arch = arch
        self.in_channels = in_channels
        self.input_size = input_size
        self.num_classes = num_classes

    def extra_repr(self) -> str:
        kind = "SNN" if self.spiking else "DNN"
        return f"arch={self.arch}, {kind}, T={self.T}, split_points={len(self.split_points)}"


def assemble(
    arch: str,
    cfg: NeuronConfig,
    body: OrderedDict[str, nn.Module],
    split_points: list[str],
    features: int,
    *,
    T: int,
    in_channels: int,
    input_size: int,
    num_classes: int,
) -> Backbone:
    """``input → body → head``: what every builder ends with."""
    from .layers import InputEncoder, make_head

    stages = OrderedDict(
        [("input", InputEncoder(T, cfg.spiking)), *body.items(), ("head", make_head(features, num_classes))]
    )
    return Backbone(
        stages,
        split_points,
        arch=arch,
        neuron_cfg=cfg,
        T=T,
        in_channels=in_channels,
        input_size=input_size,
        num_classes=num_classes,
    )


@torch.no_grad()
def _runs_children_in_order(model: nn.Module, children: list, in_channels: int, input_size: int) -> bool:
    """Whether ``model(x)`` equals its children applied one after another (one eval step, fresh state)."""
    if len(children) < 2:
        return True  # refused below with its own message
    training = model.training
    model.eval()
    x = torch.rand(2, in_channels, input_size, input_size)
    try:
        functional.reset_net(model)
        want = model(x)
        functional.reset_net(model)
        got = x
        for _, child in children:
            got = child(got)
        same = isinstance(want, torch.Tensor) and want.shape == got.shape and torch.allclose(want, got)
    except (RuntimeError, TypeError, ValueError):
        same = False
    functional.reset_net(model)
    model.train(training)
    return same


def from_sequential(
    model: nn.Module,
    *,
    T: int = 4,
    in_channels: int = 3,
    input_size: int = 32,
    num_classes: int = 10,
    arch: str = "custom",
) -> Backbone:
    """Your own model as a :class:`Backbone`: an ``nn.Sequential`` (plain torch or SpikingJelly
    layers), or any module whose forward runs its named children in order (checked on a random
    input). Every child but the last is a split point (its name); the last is the head. Shares
    the modules; a static image is repeated over ``T``.
    """
    from spikingjelly.activation_based.neuron import BaseNode

    from .layers import InputEncoder

    children = list(model.named_children())
    if not isinstance(model, nn.Sequential) and not _runs_children_in_order(model, children, in_channels, input_size):
        raise InvalidArgumentError(
            f"{type(model).__name__}.forward does not run its children in order (checked on a random input), so it "
            "cannot be cut by child names; wrap the layers in nn.Sequential(OrderedDict(...))"
        )
    if len(children) < 2:
        raise InvalidArgumentError("a model to cut needs at least two children (an edge part and a head)")
    spiking = any(isinstance(m, BaseNode) for m in model.modules())
    stages = OrderedDict([("input", InputEncoder(T, spiking)), *children])
    backbone = Backbone(
        stages,
        [name for name, _ in children[:-1]],
        arch=arch,
        neuron_cfg=NeuronConfig(spiking=spiking),
        T=T,
        in_channels=in_channels,
        input_size=input_size,
        num_classes=num_classes,
    )
    return backbone.set_step_mode("s")
