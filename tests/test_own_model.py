"""Your own model: cut and co-inference on an nn.Sequential of SpikingJelly or plain torch layers."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

import neucodex as nc
from neucodex.bottleneck import CoInferenceModel
from neucodex.errors import InvalidArgumentError

from conftest import calibrate_bn


def spiking_net() -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv1=layer.Conv2d(3, 8, 3, padding=1),
            bn1=layer.BatchNorm2d(8),
            sn1=neuron.LIFNode(tau=2.0),
            conv2=layer.Conv2d(8, 16, 3, stride=2, padding=1),
            bn2=layer.BatchNorm2d(16),
            sn2=neuron.LIFNode(tau=2.0),
            pool=layer.AdaptiveAvgPool2d((1, 1)),
            flat=layer.Flatten(),
            fc=layer.Linear(16, 10),
        )
    )


def test_cut_an_own_spikingjelly_sequential_equals_the_whole():
    backbone = nc.from_sequential(spiking_net(), T=3, input_size=16)
    calibrate_bn(backbone, size=16)
    x = torch.rand(4, 3, 16, 16)
    whole = torch.stack([backbone(x) for _ in range(3)])
    backbone.reset_state()
    edge, cloud = nc.cut(backbone, "sn1")
    parts = torch.stack([cloud(edge(x)) for _ in range(3)])
    backbone.reset_state()
    assert torch.equal(whole, parts)
    assert nc.split_points(backbone)[:3] == ["conv1", "bn1", "sn1"]
    assert set(edge(x).unique().tolist()) <= {0.0, 1.0}  # the cut after a LIF sends spikes


def test_co_inference_on_an_own_model_trains_a_step():
    backbone = nc.from_sequential(spiking_net(), T=2, input_size=16)
    model = CoInferenceModel(backbone, "sn2", "c4s2").train().set_step_mode("m")
    logits = model(torch.rand(4, 3, 16, 16))
    assert logits.shape == (2, 4, 10)
    logits.sum().backward()
    assert model.stages.encoder[0].weight.grad is not None
    with pytest.raises(InvalidArgumentError, match=r"\[C, H, W\] map; after 'flat' it is \[16\]"):
        CoInferenceModel(nc.from_sequential(spiking_net()), "flat", "c4s2")


def test_cut_of_a_plain_torch_sequential_and_a_clear_refusal():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()
    x = torch.rand(2, 3, 8, 8)
    edge, cloud = nc.cut(net, "1")
    assert torch.allclose(cloud(edge(x)), net(x))

    class InOrder(nn.Module):  # a custom module whose forward runs its children in order: cut by name
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.act, self.flat, self.fc = net[0], net[1], net[2], net[3]

        def forward(self, x):
            return self.fc(self.flat(self.act(self.conv(x))))

    class Skips(InOrder):  # … and one whose forward does not: refused in one line
        def forward(self, x):
            return self.fc(self.flat(self.conv(x)))

    own = nc.from_sequential(InOrder(), in_channels=3, input_size=8)
    assert nc.split_points(own) == ["conv", "act", "flat"]
    with pytest.raises(InvalidArgumentError, match="does not run its children in order"):
        nc.cut(Skips(), "act", in_channels=3, input_size=8)
