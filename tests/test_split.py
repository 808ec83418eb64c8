"""Cutting: cloud(edge(x)) == model(x) exactly, in both step modes, for SNNs and DNN twins."""

from __future__ import annotations

import pytest
import torch

import neucodex as nc
from neucodex.errors import UnknownNameError

from conftest import assert_same_logits, calibrate_bn


@pytest.mark.parametrize("name", nc.list_models())
def test_cut_is_exact_in_both_step_modes(name):
    T = 2
    model = calibrate_bn(nc.create_model(name, T=T))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        reference = model.set_step_mode("m")(x)
        model.reset_state()
        for point in nc.split_points(model):
            edge, cloud = nc.cut(model, point)
            spikes = edge.set_step_mode("m")(x)
            assert set(spikes.unique().tolist()) <= {0.0, 1.0}, "block outputs must stay binary"
            assert spikes.shape[2:] == nc.feature_shape(model, point)
            assert torch.equal(cloud.set_step_mode("m")(spikes), reference), point
            model.reset_state()

            edge.set_step_mode("s")
            cloud.set_step_mode("s")
            stream = torch.stack([cloud(edge(x)) for _ in range(T)])
            edge.reset_state()
            cloud.reset_state()
            assert_same_logits(stream, reference, point)


@pytest.mark.parametrize("name", nc.list_models())
def test_dnn_twin_cut_is_exact(name):
    model = calibrate_bn(nc.create_model(name, spiking=False))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        for point in nc.split_points(model):
            edge, cloud = nc.cut(model, point)
            assert torch.equal(cloud(edge(x)), reference), point


def test_parts_share_weights_and_reset():
    model = calibrate_bn(nc.create_model("resnet-tiny", T=2))
    edge, cloud = nc.cut(model, "rb2")
    assert edge.stages.rb1 is model.stages.rb1
    assert cloud.stages.head is model.stages.head
    # reset_state on the whole model clears the parts' neurons (shared modules).
    edge.set_step_mode("s")
    with torch.no_grad():
        edge(torch.rand(1, 3, 32, 32))
    lif = edge.stages.rb1.act
    assert isinstance(lif.v, torch.Tensor)
    model.reset_state()
    assert not isinstance(lif.v, torch.Tensor) or lif.v.abs().sum() == 0


def test_unknown_split_point():
    model = nc.create_model("vgg-tiny")
    with pytest.raises(UnknownNameError, match="'rb1' is not a split point of vgg-tiny"):
        nc.cut(model, "rb1")
