"""The bottleneck unit inserted at a split point, and the co-inference model around it.

- SNN: SpikeBottleNet §3.5 — encoder conv → tdBN → LIF reduces ``[C, H, W]`` to binary
  ``[C', H', W']`` (channel reduction, spatial reduction by stride); decoder transposed conv →
  tdBN → LIF restores ``[C, H, W]`` spikes for the tail.
- DNN twin: BottleNet++ (Shao & Zhang 2020) — encoder conv → BN → sigmoid, quantised to 8 bits
  for transmission (straight-through gradient); decoder transposed conv → BN → ReLU.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch
from spikingjelly.activation_based import layer
from torch import nn

from .errors import InvalidArgumentError, NeucodexError
from .models import Backbone, Stages
from .models.layers import NeuronConfig, make_neuron, make_norm
from .split import feature_shape, stage_index


@dataclass(frozen=True)
class BottleneckConfig:
    """``channels`` C' sent per position, spatial ``stride``, conv ``kernel`` (odd)."""

    channels: int
    stride: int = 1
    kernel: int = 3

    def __post_init__(self) -> None:
        if self.channels < 1 or self.stride < 1 or self.kernel < 1 or self.kernel % 2 == 0:
            raise InvalidArgumentError(f"bad bottleneck {self}: channels ≥ 1, stride ≥ 1, odd kernel ≥ 1")

    @property
    def name(self) -> str:
        return f"c{self.channels}s{self.stride}k{self.kernel}"

    @classmethod
    def parse(cls, text: str) -> BottleneckConfig:
        """``"c32s2"`` or ``"c32s2k3"`` → config (the form sweeps and the CLI use)."""
        m = re.fullmatch(r"c(\d+)(?:s(\d+))?(?:k(\d+))?", text.strip())
        if not m:
            raise NeucodexError(f"bad bottleneck spec {text!r}; write c<channels>[s<stride>][k<kernel>], e.g. c32s2")
        c, s, k = m.groups()
        return cls(int(c), int(s or 1), int(k or 3))

    def to_dict(self) -> dict:
        return asdict(self)


def code_shape(shape: tuple[int, int, int], cfg: BottleneckConfig) -> tuple[int, int, int]:
    """``(C', H', W')`` the encoder emits for a ``(C, H, W)`` feature."""
    _, h, w = shape
    pad = cfg.kernel // 2
    return (cfg.channels, (h + 2 * pad - cfg.kernel) // cfg.stride + 1, (w + 2 * pad - cfg.kernel) // cfg.stride + 1)


def _deconv(cfg: BottleneckConfig, out_shape: tuple[int, int, int]) -> nn.Module:
    """Transposed conv mapping the code back to exactly ``out_shape`` (output padding solved)."""
    c, h, w = out_shape
    _, hc, wc = code_shape(out_shape, cfg)
    pad = cfg.kernel // 2
    out_pad = tuple(full - ((small - 1) * cfg.stride - 2 * pad + cfg.kernel) for full, small in ((h, hc), (w, wc)))
    return layer.ConvTranspose2d(cfg.channels, c, cfg.kernel, cfg.stride, pad, output_padding=out_pad, bias=False)


class Quantize8(nn.Module):
    """Round [0, 1] features to 8 bits; gradient passes straight through."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (torch.round(x * 255.0) / 255.0 - x).detach()


def make_bottleneck(
    shape: tuple[int, int, int], cfg: BottleneckConfig, neuron_cfg: NeuronConfig
) -> tuple[nn.Sequential, nn.Sequential]:
    """(encoder, decoder) for a ``(C, H, W)`` feature: spiking, or BottleNet++ for a DNN."""
    c, h, w = shape
    pad = cfg.kernel // 2
    if cfg.stride > min(h, w):
        raise InvalidArgumentError(f"stride {cfg.stride} is larger than the {h}x{w} feature map")
    conv = layer.Conv2d(c, cfg.channels, cfg.kernel, cfg.stride, pad, bias=False)
    deconv = _deconv(cfg, shape)
    if neuron_cfg.spiking:
        encoder = nn.Sequential(conv, make_norm(cfg.channels, neuron_cfg), make_neuron(neuron_cfg))
        decoder = nn.Sequential(deconv, make_norm(c, neuron_cfg), make_neuron(neuron_cfg))
    else:
        encoder = nn.Sequential(conv, layer.BatchNorm2d(cfg.channels), nn.Sigmoid(), Quantize8())
        decoder = nn.Sequential(deconv, layer.BatchNorm2d(c), nn.ReLU())
    return encoder, decoder


class CoInferenceModel(Backbone):
    """A backbone with a bottleneck inserted after ``point``.

    Takes (does not copy) the backbone's modules, so fine-tuning updates them. ``forward`` runs
    the whole chain for training and evaluation; ``.edge`` (input … head of the cut + encoder,
    emits the code: binary spikes for an SNN, 8-bit values for a DNN) and ``.cloud`` (decoder +
    tail, emits logits) run in both step modes.
    """

    def __init__(self, backbone: Backbone, point: str, config: BottleneckConfig | str) -> None:
        cfg = BottleneckConfig.parse(config) if isinstance(config, str) else config
        k = stage_index(backbone, point)
        shape = feature_shape(backbone, point)
        if len(shape) != 3:
            raise InvalidArgumentError(
                f"a bottleneck goes where the feature is a [C, H, W] map; after {point!r} it is {list(shape)}"
            )
        encoder, decoder = make_bottleneck(shape, cfg, backbone.neuron_cfg)
        items = list(backbone.stages._modules.items())
        stages = OrderedDict(items[: k + 1] + [("encoder", encoder), ("decoder", decoder)] + items[k + 1 :])
        super().__init__(
            stages,
            ["encoder"],
            arch=backbone.arch,
            neuron_cfg=backbone.neuron_cfg,
            T=backbone.T,
            in_channels=backbone.in_channels,
            input_size=backbone.input_size,
            num_classes=backbone.num_classes,
        )
        self.set_step_mode(backbone.step_mode)
        self.point = point
        self.config = cfg
        self.feature_shape = shape
        self.code_shape = code_shape(shape, cfg)

    @property
    def edge(self) -> Stages:
        return self.slice(0, self.names().index("encoder") + 1)

    @property
    def cloud(self) -> Stages:
        return self.slice(self.names().index("decoder"))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, point={self.point}, bottleneck={self.config.name}"
