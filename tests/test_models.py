"""Backbones: registry, parameter counts, step-mode equivalence, state reset."""

from __future__ import annotations

import pytest
import torch

import neucodex as nc
from neucodex.errors import UnknownNameError

from conftest import assert_same_logits, calibrate_bn

ALL = nc.list_models()


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Derived from the architectures (bias-free convs followed by BN; BN has weight + bias):
# - ResNet-18/34 CIFAR (kuangliu/pytorch-cifar layout: 3x3 stem, no max-pool), 10 classes:
#   11,173,962 / 21,282,122 — the widely quoted "11.17 M" / "21.28 M".
# - ResNet-50 CIFAR, 100 classes: 23,705,252 ("23.7 M").
# - VGG-16-BN CIFAR (13 conv units, one 512→K linear), 10 classes: 14,724,042 ("≈15 M");
#   pytorch-cifar's version also has conv biases, +4,224 = 14,728,266.
@pytest.mark.parametrize(
    "name, classes, expected",
    [
        ("resnet18", 10, 11_173_962),
        ("resnet34", 10, 21_282_122),
        ("resnet50", 100, 23_705_252),
        ("vgg16", 10, 14_724_042),
        ("vgg11", 10, 9_228_362),
    ],
)
def test_parameter_counts(name, classes, expected):
    snn = nc.create_model(name, num_classes=classes)
    dnn = nc.create_model(name, num_classes=classes, spiking=False)
    assert n_params(snn) == expected
    assert n_params(dnn) == expected  # LIF has no parameters; tdBN has BN's


def test_registry_lists_and_rejects():
    assert {"resnet18", "resnet34", "resnet50", "vgg11", "vgg16"} <= set(ALL)
    with pytest.raises(UnknownNameError, match="unknown model 'resnet99'; available: "):
        nc.create_model("resnet99")


def test_resnet50_split_points_match_spikebottlenet():
    model = nc.create_model("resnet50", num_classes=100)
    shapes = nc.feature_shapes(model, 32)
    assert list(shapes) == [f"rb{i}" for i in range(1, 17)]
    expected = [(256, 32, 32)] * 3 + [(512, 16, 16)] * 4 + [(1024, 8, 8)] * 6 + [(2048, 4, 4)] * 3
    assert list(shapes.values()) == expected
    c, h, w = shapes["rb16"]
    assert c * h * w * 4 == 131_072  # SpikeBottleNet: RB16 at T=4


def test_split_point_counts():
    assert len(nc.split_points(nc.create_model("resnet18"))) == 8
    assert len(nc.split_points(nc.create_model("vgg16"))) == 13
    assert len(nc.split_points(nc.create_model("vgg11"))) == 8


@pytest.mark.parametrize("name", ALL)
def test_single_step_equals_multi_step(name):
    T = 2
    model = calibrate_bn(nc.create_model(name, T=T))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        multi = model.set_step_mode("m")(x)
        model.reset_state()
        model.set_step_mode("s")
        single = torch.stack([model(x) for _ in range(T)])
        model.reset_state()
    assert multi.shape == (T, 2, 10)
    assert_same_logits(single, multi)
    assert multi.std() > 0


@pytest.mark.parametrize("name", ALL)
def test_event_frames_input(name):
    """Event frames [T, B, 2, H, W] go straight through; single-step takes frame t."""
    model = calibrate_bn(nc.create_model(name, T=3, in_channels=2), size=32)
    frames = (torch.rand(3, 2, 2, 32, 32) < 0.3).float()
    with torch.no_grad():
        multi = model.set_step_mode("m")(frames)
        model.reset_state()
        model.set_step_mode("s")
        single = torch.stack([model(f) for f in frames])
        model.reset_state()
    assert_same_logits(single, multi)


def test_reset_clears_state():
    model = calibrate_bn(nc.create_model("vgg-tiny", T=3)).set_step_mode("s")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        first = [model(x) for _ in range(3)]
        second_without_reset = model(x)
        model.reset_state()
        again = [model(x) for _ in range(3)]
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    # Without a reset the membrane carries over, so step 4 is not a fresh step 1.
    assert not torch.equal(second_without_reset, first[0])


def test_dnn_twin_has_no_time():
    dnn = calibrate_bn(nc.create_model("resnet-tiny", spiking=False))
    out = dnn(torch.rand(4, 3, 32, 32))
    assert out.shape == (4, 10)
    frames = torch.rand(3, 4, 3, 32, 32)
    assert torch.equal(dnn(frames), dnn(frames.mean(0)))  # event frames are averaged


def test_bad_options_are_clear():
    with pytest.raises(ValueError, match="T must be >= 1"):
        nc.create_model("vgg-tiny", T=0)
    with pytest.raises(ValueError, match="unknown surrogate"):
        nc.create_model("vgg-tiny", surrogate="nope")
    with pytest.raises(ValueError, match="step mode must be"):
        nc.create_model("vgg-tiny").set_step_mode("x")


def test_list_models_takes_timm_style_wildcards():
    assert nc.list_models("resnet*") == [m for m in ALL if m.startswith("resnet")]
    assert nc.list_models("*tiny") and all(m.endswith("tiny") for m in nc.list_models("*tiny"))
    assert nc.list_models("nothing-like-this*") == []
    assert callable(nc.register_dataset) and callable(nc.build_dataset)  # exported for bring-your-own data
