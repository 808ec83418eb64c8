"""Spike bottleneck and BottleNet++ at split points: shapes, step modes, wire path, bits."""

from __future__ import annotations

import pytest
import torch

import neucodex as nc
from neucodex import codec
from neucodex.accounting import measure_bits
from neucodex.bottleneck import BottleneckConfig, CoInferenceModel
from neucodex.errors import NeucodexError

from conftest import assert_same_logits, calibrate_bn


def coinf(name: str, point: str, spec: str, spiking: bool = True, T: int = 2) -> CoInferenceModel:
    return calibrate_bn(CoInferenceModel(nc.create_model(name, T=T, spiking=spiking), point, spec))


@pytest.mark.parametrize(
    "name, point, spec",
    [
        ("resnet-tiny", "rb1", "c4s2"),
        ("resnet-tiny", "rb3", "c8s1k1"),
        ("vgg-tiny", "conv2", "c16s3"),
        ("vgg-tiny", "conv3", "c2s2k5"),
    ],
)
def test_spike_bottleneck_streams_exactly(name, point, spec):
    model = coinf(name, point, spec)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        reference = model.set_step_mode("m")(x)
        model.reset_state()
        edge, cloud = model.edge, model.cloud
        code = edge.set_step_mode("m")(x)
        assert code.shape == (2, 2, *model.code_shape)
        assert set(code.unique().tolist()) <= {0.0, 1.0}
        assert 0 < code.mean() < 1, "the encoder should fire, but not everywhere"
        assert torch.equal(cloud.set_step_mode("m")(code), reference)
        model.reset_state()

        # Single-step over the wire: one packet per sample per timestep, as the runtime sends.
        edge.set_step_mode("s")
        cloud.set_step_mode("s")
        out = []
        for t in range(2):
            packets = [codec.encode(s, "auto", timestep=t) for s in edge(x)]
            received = torch.cat([torch.from_numpy(codec.decode(p)) for p in packets])
            out.append(cloud(received))
        model.reset_state()
    assert_same_logits(torch.stack(out), reference)


def test_bottlenet_pp_wire_path_is_exact():
    model = coinf("resnet-tiny", "rb2", "c8s2", spiking=False)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        code = model.edge(x)
        assert torch.equal(code, torch.round(code * 255) / 255), "features are 8-bit quantised"
        received = torch.cat([torch.from_numpy(codec.decode(codec.encode(c, "uint8"))) for c in code])
        assert torch.equal(model.cloud(received), reference)


def test_spikebottlenet_256x_point():
    """ResNet-50 RB16, 32 channels at stride 2: 128 bits per timestep, 512 at T=4 (256x)."""
    model = CoInferenceModel(nc.create_model("resnet50", num_classes=100, T=4), "rb16", "c32s2").eval()
    assert model.feature_shape == (2048, 4, 4)
    assert model.code_shape == (32, 2, 2)
    report = measure_bits(model, torch.rand(1, 3, 32, 32), "bitmap")
    assert report.payload_bits == 512
    assert report.payload_bits / report.timesteps == 128
    assert report.wire_bytes == 4 * (codec.HEADER_BYTES + 16)
    assert report.vs_spikes == 256
    assert report.vs_float32 == 2048
    assert report.vs_input == 3 * 32 * 32 * 8 / 512


def test_accounting_counts_real_bytes_and_early_exit():
    model = coinf("vgg-tiny", "conv2", "c4s2", T=4)
    x = torch.rand(3, 3, 32, 32)
    full = measure_bits(model, x, "bitmap")
    early = measure_bits(model, x, "bitmap", steps=torch.tensor([1, 2, 4]))
    per_step = 4 * 4 * 4  # 4 channels x 4 x 4 after stride 2 on the 8x8 conv2 output
    assert full.payload_bits == 4 * per_step
    assert early.payload_bits == pytest.approx((1 + 2 + 4) / 3 * per_step)
    assert early.timesteps == pytest.approx(7 / 3)
    auto = measure_bits(model, x)
    assert auto.payload_bits <= full.payload_bits
    assert sum(auto.formats.values()) == 3 * 4


def test_training_reaches_the_encoder():
    model = CoInferenceModel(nc.create_model("vgg-tiny", T=2), "conv2", "c4s2").train()
    model.set_step_mode("m")
    loss = model(torch.rand(4, 3, 32, 32)).mean(0).logsumexp(-1).mean()
    loss.backward()
    encoder_conv = model.stages.encoder[0]
    assert encoder_conv.weight.grad is not None and encoder_conv.weight.grad.abs().sum() > 0


def test_bottleneck_config_parsing():
    assert BottleneckConfig.parse("c32s2") == BottleneckConfig(32, 2, 3)
    assert BottleneckConfig.parse("c8") == BottleneckConfig(8, 1, 3)
    assert BottleneckConfig.parse("c8s1k1").name == "c8s1k1"
    with pytest.raises(NeucodexError, match="bad bottleneck spec 'x32'"):
        BottleneckConfig.parse("x32")
    with pytest.raises(ValueError, match="odd kernel"):
        BottleneckConfig(8, 1, 2)
    with pytest.raises(ValueError, match="larger than the 4x4"):
        CoInferenceModel(nc.create_model("resnet-tiny"), "rb4", "c8s8")
