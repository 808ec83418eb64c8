"""Energy counts: the paper's Table 3 row, a hand-computable AC case, SpikingJelly's op_counter, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from spikingjelly.activation_based.op_counter import DispatchCounterMode, MACCounter, SynOpCounter
from torch import nn

import neucodex as nc
from neucodex.cli import main
from neucodex.energy import count_ops, energy, per_split_point
from neucodex.errors import NeucodexError
from neucodex.latency import Link, Timings, co_inference_ms
from neucodex.profiles import HARDWARE, hardware_profile

from conftest import calibrate_bn

# SpikeBottleNet Table 3, BottleNet++ row (45 nm, mJ) at RB1 … RB16
BOTTLENET_PP = [0.27, 0.60, 0.93, 1.33, 1.66, 1.99, 2.32, 2.72, 3.05, 3.38, 3.70, 4.03, 4.36, 4.77, 5.09, 5.42]


def test_bottlenet_pp_row_of_table_3_is_reproduced(capsys):
    assert (
        main(
            [
                "energy",
                "resnet50",
                "--dnn",
                "--scope",
                "paper",
                "--num-classes",
                "100",
                "--input-size",
                "32",
                "--samples",
                "1",
                "--json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [r["rb"] for r in rows] == [f"RB{k}" for k in range(1, 17)]
    assert [round(r["energy_mj"], 2) for r in rows] == BOTTLENET_PP
    assert all(r["acs"] == 0 for r in rows)


def test_ac_counts_are_exact_on_known_spikes():
    """A binary 8x8 input with 10 ones at T=2: the stem's ACs are dense x rate, by hand."""
    model = nc.create_model("vgg-tiny", T=2, in_channels=1, input_size=8, widths=(4, 8, 8)).eval()
    x = torch.zeros(1, 1, 8, 8)
    x.view(-1)[torch.randperm(64)[:10]] = 1.0
    stem = count_ops(model, x)[0]
    dense = 8 * 8 * 4 * 1 * 9  # outputs x (in channels x 3 x 3) per timestep
    assert stem.dense == dense and stem.rates == [10 / 64, 10 / 64]
    macs, acs, mj = energy([stem], HARDWARE["45nm"], steps=2)
    assert macs == 0 and acs == 2 * dense * 10 / 64 == 720
    assert mj == pytest.approx(720 * 0.9e-9)


def test_event_input_stem_costs_an_accumulate_per_event_and_fan_out():
    """A real N-MNIST recording framed at T=4: the stem's ACs are its events x 3x3 x C_out (each
    event added into its fan-out, the SyOPs convention), counted by hand from the recording; the
    exact count without the padding's zeros is a few percent lower (events at the border)."""
    from pathlib import Path

    from neucodex.aer import read_bin
    from neucodex.framing import time_bins, to_frames

    path = sorted((Path(__file__).parent / "data" / "nmnist" / "Train").glob("*/*.bin"))[0]
    ev = read_bin(path)
    frames = torch.from_numpy(to_frames(ev, (34, 34, 2), 4, 34))[:, None]  # [T, 1, 2, 34, 34]
    model = nc.create_model("vgg-tiny", T=4, in_channels=2, input_size=34, widths=(4, 8, 8)).eval()
    stem = count_ops(model, frames)[0]
    counted = time_bins(ev, (34, 34, 2), 4)  # the events the frames hold (Tonic drops the last instant's)
    by_hand = counted.sum() * 9 * 4
    macs, acs, _ = energy([stem], HARDWARE["45nm"], steps=4)
    assert macs == 0 and acs == pytest.approx(by_hand, rel=1e-6)
    t, p, y, x = np.nonzero(counted)
    fan = (np.minimum(y + 1, 33) - np.maximum(y - 1, 0) + 1) * (np.minimum(x + 1, 33) - np.maximum(x - 1, 0) + 1)
    exact = (counted[t, p, y, x] * fan * 4).sum()
    assert 0.9 * by_hand < exact <= by_hand


def test_real_valued_input_costs_macs_and_steps_count():
    model = nc.create_model("vgg-tiny", T=3, in_channels=1, input_size=8, widths=(4, 8, 8)).eval()
    stem = count_ops(model, torch.full((2, 1, 8, 8), 0.5))[0]
    assert stem.rates is None
    assert stem.ops(1) == (2304, 0) and stem.ops(3) == (3 * 2304, 0)


@pytest.mark.parametrize("name", ["vgg-tiny", "resnet-tiny"])
def test_counts_agree_with_spikingjelly_op_counter(name):
    """MACs equal SpikingJelly's MACCounter (BN excluded); our eq.-7 ACs (rate x dense) are at least its exact
    SynOps by 8–13% as the README says (vgg-tiny 12.6%, resnet-tiny 10.3%): eq. 7 also counts the taps
    that fall on zero padding at the borders."""
    model = calibrate_bn(nc.create_model(name, T=2), size=32).set_step_mode("m")
    x = torch.rand(2, 3, 32, 32)
    macs, acs, _ = energy(count_ops(model, x), HARDWARE["45nm"], 2)
    syn, mac = SynOpCounter(), MACCounter(extra_ignore_modules=[nn.modules.batchnorm._BatchNorm])
    with torch.no_grad(), DispatchCounterMode([syn, mac]):
        model(x)
    model.reset_state()
    assert macs * 2 == mac.get_total()
    assert syn.get_total() > 0 and 1.08 <= acs * 2 / syn.get_total() <= 1.13


def test_paper_scope_leaves_out_stem_and_shortcuts():
    model = nc.create_model("resnet18", spiking=False)
    full = per_split_point(model, torch.rand(1, 3, 32, 32), HARDWARE["45nm"], "full")
    paper = per_split_point(model, torch.rand(1, 3, 32, 32), HARDWARE["45nm"], "paper")
    stem = 32 * 32 * 64 * 3 * 9
    assert full[0]["macs"] - paper[0]["macs"] == stem  # rb1 has no shortcut conv
    shortcut = 16 * 16 * 128 * 64  # rb3: 1x1 stride-2 downsample
    assert (full[2]["macs"] - paper[2]["macs"]) - (full[1]["macs"] - paper[1]["macs"]) == shortcut


def test_profiles(tmp_path):
    assert hardware_profile("rolls").ac_pj == 0.077
    f = tmp_path / "chip.yaml"
    f.write_text("name: chip\nmac_pj: 1.0\nac_pj: 0.1\n")
    assert hardware_profile(str(f)).ac_pj == 0.1
    f.write_text("name: chip\n")
    with pytest.raises(NeucodexError, match="mac_pj"):
        hardware_profile(str(f))
    with pytest.raises(NeucodexError, match="unknown hardware profile"):
        hardware_profile("tpu")


def test_latency_model_pipelining_hides_edge_compute():
    t = Timings(edge_step=5.0, cloud_step=1.0, edge_full=20.0, cloud_full=20.0)
    link = Link(1e6, 10.0)  # 100 bits → 0.1 ms
    plain = co_inference_ms(t, link, 4, 100, pipeline=False)
    piped = co_inference_ms(t, link, 4, 100)
    assert plain == pytest.approx(4 * (5 + 0.1 + 10 + 1))
    assert piped == pytest.approx(5 + 4 * (0.1 + 10 + 1))  # compute hidden behind the round trip
    assert co_inference_ms(t, link, 4, 100, device_factor=10) == pytest.approx(50 + 4 * 11.1 + 3 * (50 - 11.1))


def test_compute_times_are_medians_of_interleaved_rounds():
    """A burst of other work in one round (here one slow call) does not move a part's time."""
    import time

    from neucodex.latency import _medians_ms

    calls = {"n": 0}

    def bursty():
        calls["n"] += 1
        time.sleep(0.2 if calls["n"] == 3 else 0.001)

    ms = _medians_ms({"bursty": bursty, "steady": lambda: time.sleep(0.001)}, repeats=5)
    assert calls["n"] == 6  # a warm-up, then one call per round
    assert ms["bursty"] < 50 and ms["steady"] < 50


def test_energy_cli_errors_are_one_line(capsys):
    assert main(["energy", "nosuchnet"]) == 2
    assert main(["energy", "vgg-tiny", "--profile", "tpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("neucodex: error:") for e in err)


def test_a_sparser_head_is_reported_apart_from_the_cut_and_exit():
    """With the backbone's own head the two savings are one; when fine-tuning makes the head fire
    less, the saving grows and the cut-and-exit share stays what the backbone's head gives."""
    import copy
    from types import SimpleNamespace

    from neucodex.bottleneck import CoInferenceModel
    from neucodex.energy import OpCounts, coinference_energy
    from neucodex.profiles import radio_profile
    from neucodex.report.markdown import head_share

    torch.manual_seed(0)
    backbone = nc.create_model("vgg-tiny", T=2, in_channels=1, widths=(8, 16, 16)).train()
    dnn = nc.create_model("vgg-tiny", spiking=False, in_channels=1, widths=(8, 16, 16))
    model = CoInferenceModel(copy.deepcopy(backbone), "conv2", "c4s1").train()  # the backbone's own head
    x, steps = torch.rand(8, 1, 16, 16), torch.tensor([1, 2, 2, 1, 2, 2, 1, 2])
    bits = SimpleNamespace(wire_bytes=100.0, per_sample_wire_bytes=(100,) * 8, input_bits=2048)

    def saving():
        counts = OpCounts.of(model, backbone, dnn, x)
        return coinference_energy(model, counts, steps, bits, bits, radio_profile("wifi"))[0]["45nm"]

    same = saving()
    assert same.compute_reduction_backbone_head == pytest.approx(same.compute_reduction_vs_edge_only_snn)
    assert same.compute_reduction_backbone_head_paper == pytest.approx(same.compute_reduction_vs_edge_only_snn_paper)
    with torch.no_grad():
        model.stages.conv1[1].bias -= 1.0  # a head that fires less than the backbone's
    sparse = saving()
    assert sparse.compute_reduction_vs_edge_only_snn_paper > same.compute_reduction_vs_edge_only_snn_paper
    assert sparse.compute_reduction_backbone_head_paper == pytest.approx(
        same.compute_reduction_backbone_head_paper  # the paper's scope leaves the encoder out
    )
    assert head_share(same) is None  # the report and the demo add their line only for a changed head
    assert f"{100 * sparse.compute_reduction_backbone_head_paper:.1f}% less in SpikeBottleNet's" in head_share(sparse)
